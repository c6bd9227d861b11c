"""TRL's GRPOTrainer with the unlikeliness reward, the reference's dynamic update and a gradient-norm skip.

TRL is pinned (trl==1.16.0) because eight private methods are overridden, each as a thin wrapper
around TRL's own, and ``tests/test_train.py`` asserts their signatures so an upgrade fails loudly:

- ``GRPOTrainer._generate``: times generation and keeps the prompt token ids, which the ranking needs.
- ``GRPOTrainer._calculate_rewards``: its result is already gathered over processes, so whole groups
  are visible; no optimizer step happens between sampling and this call, so log-probs computed here
  are the sampling (old) policy's. The unlikeliness shaping goes here, before TRL normalises groups.
- ``GRPOTrainer._generate_and_score_completions``: the dynamic-update buffer filters its output.
- ``GRPOTrainer._get_per_token_logps_and_entropies``: when TRL computes the old policy's log-probs
  itself (``num_iterations > 1``, or vLLM's importance-sampling correction), its first no-grad call
  on the policy in a generation step is that computation; keeping its result saves the ranking a
  second forward pass over the batch.
- ``transformers.Trainer._get_grad_norm``: called before every optimizer step with the pre-clip norm;
  dropping the gradients there makes ``optimizer.step()`` a no-op (AdamW skips parameters without a
  gradient: no momentum, no weight decay), which is what a *skip* means.
- ``transformers.Trainer._save_checkpoint`` / ``_load_rng_state``: the dynamic-update buffer (rows with
  signal waiting for an update), TRL's buffered generation batch and step counter are saved beside
  the RNG state and restored with it on resume (``prover.rl.resume_state``).
- ``GRPOTrainer._get_train_sampler``: TRL's sampler with an epoch-replaying ``set_epoch`` (same module).
- ``GRPOTrainer.create_model_card`` (none during training) and ``GRPOTrainer.log`` (counts as counts).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from trl import GRPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.utils import pad
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from prover.rl.config import ProverGRPOConfig
from prover.rl.resume_state import ReplayRepeatSampler, load_resume_state, save_resume_state
from prover.rl.rewards import ProofReward
from prover.rl.solved import SolvedProofs
from prover.rl.unlikeliness import sequence_logprob, shape_rewards, zero_signal_groups

logger = logging.getLogger(__name__)

# Output keys of _generate_and_score_completions that the dynamic update knows how to concatenate:
# how to pad each (side, value), None for per-row scalars. Anything else (images) is refused.
_LEFT, _RIGHT = "left", "right"
_ROW_KEYS = {
    "prompt_ids": (_LEFT, "pad"), "prompt_mask": (_LEFT, 0),
    "completion_ids": (_RIGHT, "pad"), "completion_mask": (_RIGHT, 0), "tool_mask": (_RIGHT, 1),
    "old_per_token_logps": (_RIGHT, 0.0), "ref_per_token_logps": (_RIGHT, 0.0),
    "sampling_per_token_logps": (_RIGHT, 0.0), "importance_sampling_ratio": (_RIGHT, 1.0),
    "advantages": None,
}


class UnlikelinessGRPOTrainer(GRPOTrainer):
    """GRPO as in TRL, plus (per ``ProverGRPOConfig``) the unlikeliness reward on ``reward_funcs[0]``, the
    0/1 correctness reward; the dynamic update; the grad-norm skip; solved proofs written to
    ``solved_path``; and metrics: ``pass_rate``, ``solved_total``, ``zero_signal_frac``,
    ``unlikeliness/factor_mean``, ``time/{generate,verify,rank,update}``, ``grad_skipped``, ``dynamic/*``.
    """

    def __init__(self, *args: Any, solved_path: str | Path | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not isinstance(self.args, ProverGRPOConfig):
            raise TypeError(f"args must be a ProverGRPOConfig, got {type(self.args).__name__}")
        if self.args.dynamic_update and self.args.steps_per_generation % self.args.gradient_accumulation_steps:
            raise ValueError(
                f"dynamic_update needs steps_per_generation ({self.args.steps_per_generation}) to be a multiple of "
                f"gradient_accumulation_steps ({self.args.gradient_accumulation_steps}), so that no optimizer step "
                "mixes a held batch with an update batch"
            )
        self.solved = SolvedProofs(solved_path) if solved_path else None
        self._solved_names: set[str] = set(self.solved.names) if self.solved else set()
        self._prompt_ids: list[list[int]] | None = None  # of the batch being scored
        self._old_logps: dict[str, torch.Tensor] | None = None  # TRL's old log-probs of that batch, when it makes them
        self._row_signal: torch.Tensor | None = None  # (N_global,) rows of groups with signal
        self._buffer: list[dict[str, Any]] = []  # local rows with signal, waiting for an update
        self._buffer_size = 0  # rows in the buffer over all processes
        self._hold = False  # the current generation batch carries no update: skip its optimizer steps
        self._scoring_time = 0.0
        self._update_time = 0.0

    # ---- generation and rewards -------------------------------------------------------------------

    def _generate(self, prompts: list):
        start = time.perf_counter()
        out = super()._generate(prompts)
        self._prompt_ids = out[0]
        self._metrics["train" if self.model.training else "eval"]["time/generate"].append(time.perf_counter() - start)
        return out

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if not self.model.training:
            return rewards_per_func
        metrics = self._metrics["train"]
        group = self.num_generations
        raw = rewards_per_func[:, 0]  # (N,) the correctness reward, gathered over processes
        self._record_solved()
        zero = zero_signal_groups(raw, group)  # (N / G,)
        self._row_signal = ~zero.repeat_interleave(group)
        metrics["pass_rate"].append(torch.nanmean(raw).item())
        metrics["zero_signal_frac"].append(zero.float().mean().item())
        metrics["solved_total"].append(float(len(self._solved_names)))
        if not self.args.unlikeliness:
            return rewards_per_func
        start = time.perf_counter()
        keys, sample_ids = self._ranking_keys(completion_ids_list)
        shaped, factors = shape_rewards(raw, keys, group, self.args.beta_rank, self.args.rank_set, sample_ids)
        metrics["time/rank"].append(time.perf_counter() - start)
        correct = raw > 0
        if correct.any():
            metrics["unlikeliness/factor_mean"].append(factors[correct].mean().item())
        rewards_per_func = rewards_per_func.clone()
        rewards_per_func[:, 0] = shaped
        return rewards_per_func

    def _ranking_keys(self, completion_ids_list: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, sample ids) of every completion, gathered: the old policy's log-prob and a token-id hash."""
        device = self.accelerator.device
        # Python's hash of a tuple of ints is the same in every process (only str/bytes hashing is salted).
        ids = torch.tensor([hash(tuple(ids)) for ids in completion_ids_list], dtype=torch.long, device=device)
        if self._old_logps and len(self._old_logps["logps"]) == len(completion_ids_list):
            keys = sequence_logprob(self._old_logps["logps"].float(), self._old_logps["mask"], self.args.rank_key)
            return self.accelerator.gather(keys), self.accelerator.gather(ids)
        prompt_ids = [torch.tensor(ids) for ids in self._prompt_ids]
        completion_ids = [torch.tensor(ids, dtype=torch.long) for ids in completion_ids_list]
        pad_id = self._tokenizer.pad_token_id
        prompt = pad(prompt_ids, padding_value=pad_id, padding_side="left").to(device)  # (B, P)
        prompt_mask = pad([torch.ones_like(t) for t in prompt_ids], padding_value=0, padding_side="left").to(device)
        completion = pad(completion_ids, padding_value=pad_id, padding_side="right").to(device)  # (B, C)
        completion_mask = pad([torch.ones_like(t) for t in completion_ids], padding_value=0,
                              padding_side="right").to(device)
        with torch.no_grad(), disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs):
            logps, _, _ = self._get_per_token_logps_and_entropies(
                self.model, torch.cat([prompt, completion], dim=1), torch.cat([prompt_mask, completion_mask], dim=1),
                completion.size(1), batch_size=self.args.per_device_train_batch_size,
            )  # (B, C)
        keys = sequence_logprob(logps.float(), completion_mask, self.args.rank_key)
        return self.accelerator.gather(keys), self.accelerator.gather(ids)

    def _trl_computes_old_logps(self) -> bool:
        """TRL 1.16's condition for computing ``old_per_token_logps`` in _generate_and_score_completions."""
        generate_every = self.args.steps_per_generation * self.num_iterations
        return bool(self.args.gradient_accumulation_steps % generate_every != 0
                    or (self.use_vllm and self.vllm_importance_sampling_correction))

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, batch_size=None,
                                           **kwargs):
        out = super()._get_per_token_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep,
                                                         batch_size, **kwargs)
        if self._old_logps is not None and "logps" not in self._old_logps and model is self.model \
                and not torch.is_grad_enabled():
            self._old_logps = {"logps": out[0], "mask": attention_mask[:, -logits_to_keep:]}
        return out

    def _record_solved(self) -> None:
        reward = self.reward_funcs[0]
        records = reward.pop_proved() if isinstance(reward, ProofReward) else []
        records = gather_object(records)
        self._solved_names.update(r["name"] for r in records)
        if self.solved is not None and self.accelerator.is_main_process:
            self.solved.add(records, step=self.state.global_step)

    # ---- the dynamic update -----------------------------------------------------------------------

    def _generate_and_score_completions(self, inputs):
        start = time.perf_counter()
        # Truncated completions masked out of the attention would give the ranking no tokens: rank them ourselves.
        capture = (self.model.training and self.args.unlikeliness and self._trl_computes_old_logps()
                   and not self.mask_truncated_completions)
        self._old_logps = {} if capture else None
        try:
            output = super()._generate_and_score_completions(inputs)
        finally:
            self._old_logps = None
        if self.model.training and self.args.dynamic_update:
            output = self._dynamic_update(output)
        self._scoring_time += time.perf_counter() - start
        return output

    def _dynamic_update(self, output: dict[str, Any]) -> dict[str, Any]:
        """Keep the rows of groups with signal; return the buffer once it holds enough, else a held batch.

        The reference collects generation batches, minus groups whose proofs all pass or all fail,
        until ``dynamic_update_size`` samples are in, and then updates on all of them. No optimizer
        step happens while the buffer fills, so every buffered sample is still on-policy and its
        old/ref log-probs and advantages, computed when it was sampled, remain valid.
        """
        unknown = sorted(k for k, v in output.items()
                         if k not in _ROW_KEYS and k != "num_items_in_batch" and v is not None)
        if unknown:
            raise ValueError(f"dynamic_update cannot buffer {unknown} (multimodal inputs); set dynamic_update: false")
        local = len(output["advantages"])
        rank = self.accelerator.process_index
        keep = self._row_signal[rank * local:(rank + 1) * local].to(output["advantages"].device)
        index = keep.nonzero().squeeze(-1)
        self._buffer.append({k: output[k].index_select(0, index.to(output[k].device))
                             for k in _ROW_KEYS if output.get(k) is not None})
        self._buffer_size += int(self._row_signal.sum().item())
        metrics = self._metrics["train"]
        metrics["dynamic/buffer_size"].append(float(self._buffer_size))
        self._hold = self._buffer_size < self.args.dynamic_update_size
        metrics["dynamic/update"].append(0.0 if self._hold else 1.0)
        if self._hold:
            return self._held_batch(output)
        batch = self._concat_rows(self._buffer, output)
        self._buffer, self._buffer_size = [], 0
        return batch

    def _held_batch(self, output: dict[str, Any]) -> dict[str, Any]:
        """A batch that trains nothing, as small as TRL's split allows: one token per row, fully masked.

        Prompt tokens stay attended (an all-masked attention row would turn into NaN logits).
        """
        rows = torch.arange(self.args.steps_per_generation, device=output["advantages"].device) % len(output["advantages"])
        held = {}
        for key, how in _ROW_KEYS.items():
            if output.get(key) is None:
                continue
            value = output[key].index_select(0, rows.to(output[key].device))
            if how is not None and value.dim() == 2:
                value = value[:, -1:] if how[0] == _LEFT else value[:, :1]
            held[key] = value
        held["completion_mask"] = torch.zeros_like(held["completion_mask"])
        held["advantages"] = torch.zeros_like(held["advantages"])
        held["num_items_in_batch"] = torch.zeros_like(output["num_items_in_batch"])
        return held

    def _concat_rows(self, parts: list[dict[str, Any]], like: dict[str, Any]) -> dict[str, Any]:
        """Concatenate buffered rows (of different lengths) into one batch TRL can split evenly.

        Every process must run the same number of micro-batches, so the rows are topped up to a
        multiple of ``steps_per_generation`` with masked copies; a process left with no rows at all
        (its groups all lacked signal) trains on a held batch.
        """
        pad_id = self._tokenizer.pad_token_id
        batch = {}
        for key, how in _ROW_KEYS.items():
            values = [p[key] for p in parts if key in p]
            if not values:
                continue
            if how is None:
                batch[key] = torch.cat(values)
                continue
            side, fill = how
            rows = [row for v in values for row in v]  # pad() takes a list of 1-D tensors
            batch[key] = pad(rows, padding_value=pad_id if fill == "pad" else fill, padding_side=side) if rows \
                else values[0]
        n = len(batch["advantages"])
        if n == 0:
            batch = self._held_batch(like)
        elif short := (-n) % self.args.steps_per_generation:
            idx = torch.arange(short, device=batch["advantages"].device) % n
            for key, value in batch.items():
                extra = value.index_select(0, idx.to(value.device))
                batch[key] = torch.cat([value, torch.zeros_like(extra) if key in ("completion_mask", "advantages")
                                        else extra])
        batch["num_items_in_batch"] = self._global_items(batch)
        return batch

    def _global_items(self, batch: dict[str, Any]) -> torch.Tensor:
        """Loss tokens over all processes: what TRL's token-level losses divide by."""
        mask = batch["completion_mask"]
        if "tool_mask" in batch:
            mask = mask * batch["tool_mask"]
        return self.accelerator.gather(mask.sum()).sum()

    # ---- checkpoints: the buffer travels with the RNG state ----------------------------------------

    def _buffer_file(self, checkpoint: str | Path) -> Path:
        return Path(checkpoint) / f"dynamic_buffer_{self.accelerator.process_index}.pt"

    def _save_checkpoint(self, model, trial):
        # Ours first: transformers writes trainer_state.json last, so a checkpoint that has it is complete.
        folder = Path(self._get_output_dir(trial=trial)) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        save_resume_state(self, folder)
        if self.args.dynamic_update:
            torch.save({"rows": self._buffer, "size": self._buffer_size}, self._buffer_file(folder))
        super()._save_checkpoint(model, trial)

    def _load_rng_state(self, checkpoint):
        """Called once when training resumes from ``checkpoint``: restore the RNG state and the buffers."""
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        load_resume_state(self, checkpoint)
        if self.solved is not None:
            self.solved.truncate_from(self.state.global_step)
            self._solved_names = set(self.solved.names)
        if self.args.dynamic_update and self._buffer_file(checkpoint).is_file():
            state = torch.load(self._buffer_file(checkpoint), map_location=self.accelerator.device)
            self._buffer, self._buffer_size = state["rows"], state["size"]
            logger.info("resumed the dynamic-update buffer: %d samples with signal", self._buffer_size)

    def _get_train_sampler(self, dataset=None):
        """TRL's sampler, made to give every epoch the same order in a resumed run (prover.rl.resume_state)."""
        sampler = super()._get_train_sampler(dataset)
        return ReplayRepeatSampler(sampler.data_source, sampler.mini_repeat_count, sampler.batch_size,
                                   sampler.repeat_count, sampler.shuffle, sampler.seed)

    def create_model_card(self, *args, **kwargs):
        """TRL writes a generic card at every checkpoint; prover.rl.model_card writes the run's own at the end."""

    # Running counts are logged as their latest value, per-batch counts as their sum since the last log,
    # not as TRL's mean over the logging window (which made solved_total 37.4).
    _LATEST = ("solved_total", "dynamic/buffer_size")
    _SUMMED = ("verifier/checked",)

    def log(self, logs, start_time=None):
        for metrics in self._metrics.values():
            for key in self._LATEST:
                if metrics.get(key):
                    metrics[key] = metrics[key][-1:]
            for key in self._SUMMED:
                if metrics.get(key):
                    metrics[key] = [sum(metrics[key])]
        super().log(logs, start_time)

    # ---- the update -------------------------------------------------------------------------------

    def training_step(self, model, inputs, num_items_in_batch):
        start, scoring = time.perf_counter(), self._scoring_time
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._update_time += time.perf_counter() - start - (self._scoring_time - scoring)
        if self._step % self.current_gradient_accumulation_steps == 0:
            self._metrics["train"]["time/update"].append(self._update_time)
            self._update_time = 0.0
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        grad_norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        norm = float(grad_norm)
        threshold = self.args.grad_skip_threshold
        too_large = threshold is not None and not (math.isfinite(norm) and norm <= threshold)
        if too_large and not self._hold:
            logger.warning("step %d: gradient norm %.3g > %g, optimizer step skipped",
                           self.state.global_step, norm, threshold)
        if self._hold or too_large:
            for p in model.parameters():
                p.grad = None
        self._metrics["train"]["grad_skipped"].append(float(too_large and not self._hold))
        return grad_norm
