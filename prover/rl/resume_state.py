"""What a checkpoint must hold, beyond transformers' own state, for a resumed run to repeat the
uninterrupted one exactly (on CPU).

transformers restores the weights, optimizer, scheduler and RNG states and skips the batches
already trained in the current epoch. Two things it does not know about changed the result of a
resumed run (the default job ended at pass@1 81.2 instead of 84.7):

- **Data order.** TRL's ``RepeatSampler`` draws each epoch's permutation from one generator seeded
  once; a resumed run builds a fresh sampler, so from epoch 1 on it replayed epoch 0's order.
  ``ReplayRepeatSampler.set_epoch(e)`` (transformers calls it before every epoch) reseeds and
  draws the ``e`` earlier permutations, giving the order of the uninterrupted run.
- **TRL's generation buffer.** A generated batch is trained on for ``steps_per_generation x
  num_iterations`` steps; a checkpoint inside that window lost the batch and TRL's step counter,
  so the resumed run sampled a new batch there. Both are saved here and restored.

The dynamic update's own state (rows with signal, prompts waiting, optimizer steps still to take) is
saved by the trainer (``dynamic_buffer_<process>.pt``); whether a step is held follows from it.

Training-side files written after the checkpoint (solved proofs, rank-bias lines) are cut back to
the checkpoint's step by their owners, so that the resumed run appends them once. A run that reached
no complete checkpoint starts over, and what it wrote is removed first (``prover.train``): the
rank-bias probe is drawn from the global RNG before training, so reading an earlier attempt's probe
back instead would start the training from another RNG state.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from trl.trainer.utils import RepeatSampler

logger = logging.getLogger(__name__)


class ReplayRepeatSampler(RepeatSampler):
    """TRL's ``RepeatSampler`` whose order depends only on (seed, epoch), not on the sampler's history."""

    def set_epoch(self, epoch: int) -> None:
        if not self.shuffle or self.seed is None:
            return
        self.generator.manual_seed(self.seed)
        for _ in range(epoch):  # one permutation per earlier epoch, as __iter__ draws them
            torch.randperm(self.num_samples, generator=self.generator)


def last_complete_checkpoint(run_dir: str | Path) -> str | None:
    """The checkpoint to resume from: the last one with ``trainer_state.json``, which transformers writes
    after everything else (and before it deletes older checkpoints). Ctrl-C during a save leaves a
    checkpoint without it, which transformers' own ``get_last_checkpoint`` would pick and fail on."""
    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    steps = []
    for path in Path(run_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
        step = path.name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")
        if step.isdigit() and (path / TRAINER_STATE_NAME).is_file():
            steps.append((int(step), path))
    return str(max(steps)[1]) if steps else None


def discard_incomplete_checkpoints(run_dir: str | Path) -> list[Path]:
    """Delete checkpoints without ``trainer_state.json`` (a save cut short); returns them. Left in place,
    one numbered above the run's last complete checkpoint would outrank it in transformers' rotation,
    which with ``save_total_limit`` would then delete the complete one."""
    import shutil

    from transformers.trainer import TRAINER_STATE_NAME
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    removed = [
        p
        for p in Path(run_dir).glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if p.is_dir() and not (p / TRAINER_STATE_NAME).is_file()
    ]
    for path in removed:
        logger.warning("removing %s: its save was cut short (no %s)", path, TRAINER_STATE_NAME)
        shutil.rmtree(path, ignore_errors=True)
    return removed


def state_file(checkpoint: str | Path, process_index: int) -> Path:
    return Path(checkpoint) / f"resume_state_{process_index}.pt"


def save_resume_state(trainer: Any, checkpoint: str | Path) -> None:
    """TRL's step counter and buffered generation batch of this process."""
    state = {"step": trainer._step, "buffered_inputs": trainer._buffered_inputs}
    torch.save(state, state_file(checkpoint, trainer.accelerator.process_index))


def load_resume_state(trainer: Any, checkpoint: str | Path) -> None:
    path = state_file(checkpoint, trainer.accelerator.process_index)
    if not path.is_file():
        logger.warning(
            "%s holds no %s (an older checkpoint): the resumed run samples a new batch where the "
            "uninterrupted one reused its buffered batch, so the two will differ",
            checkpoint,
            path.name,
        )
        return
    state = torch.load(path, map_location=trainer.accelerator.device, weights_only=False)
    trainer._step = state["step"]
    trainer._buffered_inputs = state["buffered_inputs"]
