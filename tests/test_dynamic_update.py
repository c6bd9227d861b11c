"""The dynamic update as the reference takes it: whole optimizer steps of per_device x processes x
accumulation samples, ceil(B / step) of them per epoch; held steps that do no work on any backend
(DeepSpeed included); its state across a checkpoint; the TRL code it leans on."""

from __future__ import annotations

import inspect
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import trl
from test_train import WordTask, make_args, params
from transformers import AutoTokenizer

from prover.rl.dataset import build_dataset
from prover.rl.trainer import UnlikelinessGRPOTrainer
from prover.rl.update_plan import concat_rows, plan_update, steps_per_epoch

ROOT = Path(__file__).resolve().parents[1]


# ---- the plan: pure ---------------------------------------------------------------------------------


def fake_rows(n: int, width: int = 5) -> dict[str, torch.Tensor]:
    """n rows whose completion i has i % width + 1 loss tokens and advantage i + 1 (to find it again)."""
    lengths = torch.arange(n) % width + 1
    mask = (torch.arange(width)[None, :] < lengths[:, None]).long()
    return {
        "prompt_ids": torch.arange(n)[:, None].repeat(1, 3),
        "prompt_mask": torch.ones(n, 3, dtype=torch.long),
        "completion_ids": mask * 7,
        "completion_mask": mask,
        "old_per_token_logps": -mask.float(),
        "advantages": torch.arange(n, dtype=torch.float) + 1,
    }


@pytest.mark.parametrize(
    "rows, step_rows, processes, micro",
    [
        (14, 4, 1, 2),  # 3 full steps and a partial one of 2
        (14, 8, 2, 2),  # 2 processes: a full step and a partial one of 6
        (3, 8, 2, 2),  # fewer rows than micro-batches: some are all filler
        (16, 8, 2, 4),  # whole steps only
    ],
)
def test_plan_cuts_whole_steps_dealt_evenly(rows, step_rows, processes, micro):
    data = fake_rows(rows)
    plans = [plan_update(data, step_rows, processes, micro, rank, items_scale=2.0) for rank in range(processes)]
    assert all(len(p) == steps_per_epoch(rows, step_rows) for p in plans)
    for s in range(len(plans[0])):
        expected = list(range(s * step_rows, min(rows, (s + 1) * step_rows)))
        batches = [b for p in plans for b in p[s]]
        assert len({len(b["advantages"]) for b in batches}) == 1, "every micro-batch of a step has as many rows"
        assert all(len(p[s]) == micro for p in plans)
        real = [int(a) - 1 for b in batches for a, m in zip(b["advantages"], b["completion_mask"]) if m.any()]
        assert sorted(real) == expected  # each row of the step exactly once, on some process
        for b in batches:  # filler rows carry neither loss tokens nor advantage
            filler = ~b["completion_mask"].bool().any(-1)
            assert (b["advantages"][filler] == 0).all()
            assert b["prompt_mask"].any(-1).all(), "filler prompts stay attended (no all-masked attention row)"
            tokens = float(data["completion_mask"][expected].sum())
            assert float(b["num_items_in_batch"]) == tokens * 2.0


def test_plan_trims_to_the_widest_real_row_and_refuses_uneven_steps():
    data = concat_rows([fake_rows(2, width=2), fake_rows(2, width=6)], pad_id=0)  # widths 2 and 6 padded to 6
    (step,) = plan_update(data, step_rows=4, processes=1, micro_batches=2, rank=0)
    assert [b["completion_ids"].shape[1] for b in step] == [2, 2]  # rows 0-1, then 2-3 (lengths 1, 2)
    with pytest.raises(ValueError, match="multiple of processes x micro-batches"):
        plan_update(data, step_rows=5, processes=2, micro_batches=2, rank=0)


# ---- the trainer: one process, scripted rewards -------------------------------------------------------


class ScriptedReward:
    """Rewards given per generation batch, in TRL's row order (G consecutive rows per prompt), so that
    which groups have signal is known in advance."""

    __name__ = "scripted"

    def __init__(self, batches: list[list[float]]):
        self.batches = list(batches)
        self.calls = 0

    def __call__(self, prompts, completions, **_):
        rewards = self.batches[self.calls]
        self.calls += 1
        assert len(rewards) == len(completions)
        return rewards


def scripted_trainer(model_dir, out, reward, **overrides):
    task = WordTask()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    dataset = build_dataset(task, task.load_problems(), tokenizer, max_prompt_tokens=512)
    args = make_args(
        out,
        **(
            {
                "per_device_train_batch_size": 2,
                "gradient_accumulation_steps": 2,
                "generation_batch_size": 8,
                "num_generations": 2,
                "num_iterations": 2,
                "dynamic_update_size": 8,
                "max_steps": 12,
                "save_steps": 100,
            }
            | overrides
        ),
    )
    return UnlikelinessGRPOTrainer(model=str(model_dir), reward_funcs=[reward], args=args, train_dataset=dataset)


def record_steps(trainer) -> list[list[list[int]]]:
    """Per optimizer step, the completion ids (as tuples' hashes) of the real rows it trained on."""
    steps: dict[int, list] = {}
    prepare = trainer._prepare_inputs

    def recording(batch):
        out = prepare(batch)
        real = out["completion_mask"].bool().any(-1)
        steps.setdefault(trainer.state.global_step, []).extend(
            hash(tuple(ids.tolist())) for ids, r in zip(out["completion_ids"], real) if r
        )
        return out

    trainer._prepare_inputs = recording
    return steps


MIXED, SILENT = [1.0, 0.0], [0.0, 0.0]  # a group of 2 with signal, and one without


def test_update_takes_whole_steps_in_order(tiny_model_dir, tmp_path):
    """4 groups of 2 per generation batch; 256 -> 4 rows per optimizer step (2 per micro-batch x 2).
    Batch 1: 3 groups with signal (6 rows < 8): held. Batch 2: 8 more, B = 14: ceil(14 / 4) = 4 steps
    of 4, 4, 4, 2 rows per epoch, twice (num_iterations 2) = 8 optimizer steps, more than the 4 of a
    generation batch: the third batch's prompts wait, unsampled, until the update is over."""
    reward = ScriptedReward([MIXED * 3 + SILENT, MIXED * 4, MIXED * 4])
    trainer = scripted_trainer(tiny_model_dir, tmp_path, reward)
    steps = record_steps(trainer)
    trainer.train()
    assert trainer.state.global_step == 12
    sizes = [len(steps.get(s, [])) for s in range(12)]
    assert sizes == [0, 0, 0, 0, 4, 4, 4, 2, 4, 4, 4, 2], sizes
    epoch1, epoch2 = [steps[s] for s in range(4, 8)], [steps[s] for s in range(8, 12)]
    assert epoch1 == epoch2, "the second epoch goes over the same steps in the same order"
    assert len({i for step in epoch1 for i in step}) == 14, "each buffered sample once per epoch"
    assert reward.calls == 2 and len(trainer._pending) == 1
    updates = [h["dynamic/update"] for h in trainer.state.log_history if "dynamic/update" in h]
    assert updates == [0.0, 1.0]


def test_held_steps_do_no_work(tiny_model_dir, tmp_path):
    """No group has signal: no loss, no backward, no optimizer state, no weight moved. (DeepSpeed
    steps its optimizer inside backward, so no backward means no DeepSpeed step either.)"""
    trainer = scripted_trainer(
        tiny_model_dir, tmp_path, ScriptedReward([SILENT * 4] * 2), max_steps=8, weight_decay=0.1
    )
    calls = {"loss": 0, "backward": 0}
    compute_loss, backward = trainer.compute_loss, trainer.accelerator.backward

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    trainer.compute_loss = counted("loss", compute_loss)
    trainer.accelerator.backward = counted("backward", backward)
    before = params(trainer.model)
    trainer.train()
    assert calls == {"loss": 0, "backward": 0}
    assert not trainer.optimizer.state, "AdamW never stepped (no moments, no weight decay)"
    assert all(torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def test_checkpoint_mid_update_resumes_the_remaining_steps(tiny_model_dir, tmp_path):
    """A checkpoint in the middle of an update keeps the steps still to take and the prompts that
    wait; resuming there takes exactly those steps."""
    reward = ScriptedReward([MIXED * 3 + SILENT, MIXED * 4, MIXED * 4])
    trainer = scripted_trainer(tiny_model_dir, tmp_path, reward, save_steps=10)
    steps = record_steps(trainer)
    trainer.train()
    state = torch.load(tmp_path / "checkpoint-10" / "dynamic_buffer_0.pt")
    assert len(state["plan"]) == 2 and len(state["pending"]) == 1 and state["processes"] == 1
    resumed = scripted_trainer(tiny_model_dir, tmp_path, ScriptedReward([]), max_steps=12)
    resumed_steps = record_steps(resumed)
    resumed.train(resume_from_checkpoint=str(tmp_path / "checkpoint-10"))
    assert [resumed_steps[s] for s in (10, 11)] == [steps[10], steps[11]]


def test_grad_norm_skip_at_the_threshold(tiny_model_dir, tmp_path):
    """The reference steps only when the norm is < grad_skip_thresh: at exactly 20 it skips."""
    trainer = scripted_trainer(tiny_model_dir, tmp_path, ScriptedReward([]), grad_skip_threshold=20.0)
    for p in trainer.model.parameters():
        p.grad = torch.ones_like(p)
    trainer._get_grad_norm(trainer.model, grad_norm=torch.tensor(19.99))
    assert all(p.grad is not None for p in trainer.model.parameters())
    trainer._get_grad_norm(trainer.model, grad_norm=torch.tensor(20.0))
    assert all(p.grad is None for p in trainer.model.parameters())


# ---- DeepSpeed (installed with DS_BUILD_OPS=0; CPU accelerator, gloo) ---------------------------------

DEEPSPEED_RUN = textwrap.dedent("""
    import json, sys, torch
    from pathlib import Path
    sys.path.insert(0, sys.argv[3])
    from test_train import WordTask, CountingVerifier, make_trainer, params, logged
    stage = int(sys.argv[4])

    def full_params(model):  # ZeRO-3 keeps only a shard of each parameter in place: gather them whole
        import deepspeed
        with deepspeed.zero.GatheredParameters(list(model.parameters()), enabled=stage == 3):
            return params(model)
    ds = {"zero_optimization": {"stage": stage}, "train_micro_batch_size_per_gpu": "auto",
          "gradient_accumulation_steps": "auto", "gradient_clipping": "auto", "bf16": {"enabled": False}}
    task = WordTask(verifier=CountingVerifier(rule=lambda request: False))  # no group has signal: all held
    trainer = make_trainer(Path(sys.argv[1]), Path(sys.argv[2]), task=task, deepspeed=ds, grad_skip_threshold=None,
                           max_steps=2, save_steps=100, weight_decay=0.1)
    before = full_params(trainer.model)
    trainer.train()
    after = full_params(trainer.model)
    moved = [n for n in before if not torch.equal(after[n], before[n])]
    print("RESULT " + json.dumps({"deepspeed": trainer.is_deepspeed_enabled, "moved": moved,
                                  "updates": logged(trainer, "dynamic/update")}))
""")


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_hold_leaves_the_weights(tiny_model_dir, tmp_path, stage):
    """Under DeepSpeed, Accelerate runs the engine's step (AdamW moments, weight decay) inside
    backward; before, a held step ran a masked backward and weight decay moved 16 of 21 tensors.
    Runs in its own process: DeepSpeed initialises torch.distributed and Accelerate's global state."""
    pytest.importorskip("deepspeed", reason="needs DeepSpeed (pip install -e .[deepspeed], DS_BUILD_OPS=0)")
    env = {
        **os.environ,
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(29500 + os.getpid() % 1000 + stage),
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", DEEPSPEED_RUN, str(tiny_model_dir), str(tmp_path), str(ROOT / "tests"), str(stage)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    result = json.loads(done.stdout.split("RESULT ", 1)[1].splitlines()[0])
    assert result == {"deepspeed": True, "moved": [], "updates": [0.0]}


# ---- the TRL code the dynamic update relies on (an upgrade must fail here) ---------------------------


def test_pinned_trl_behaviour():
    assert trl.__version__ == "1.16.0"
    assert list(inspect.signature(trl.GRPOTrainer._prepare_inputs).parameters) == ["self", "generation_batch"]
    # the dataloader hands each generation batch to steps_per_generation x num_iterations micro-steps in a row
    loader = inspect.getsource(trl.GRPOTrainer._get_train_sampler)
    assert "repeat_count=self.num_iterations * self.args.steps_per_generation" in loader
    # the token-level loss's normaliser, which plan_update's num_items_in_batch is scaled for
    loss = inspect.getsource(trl.GRPOTrainer._compute_loss)
    assert 'normalizer = inputs["num_items_in_batch"].clamp(min=1.0) / self.accelerator.num_processes' in loss
    assert "normalizer = normalizer * self.current_gradient_accumulation_steps / self.args.steps_per_generation" in loss
    # the per-row gather that crashed when processes trained different numbers of rows
    assert "self.accelerator.gather(masked_seq_mean(is_low_clipped.float()))" in loss
    # TRL's own advantages, which advantage_epsilon replaces: group std + 1e-4
    score = inspect.getsource(trl.GRPOTrainer._generate_and_score_completions)
    assert "advantages = advantages / (std_rewards + 1e-4)" in score


# ---- CUDA: bf16 with gradient checkpointing (scripts/gpu_check.sh runs the gpu-marked tests) ---------


@pytest.mark.gpu
def test_cuda_bf16_holds_then_updates_in_whole_steps(tiny_model_dir, tmp_path):
    """The scripted schedule of test_update_takes_whole_steps_in_order, on the GPU in bf16 with gradient
    checkpointing: the held steps leave the weights bit-identical, the update steps move them."""
    reward = ScriptedReward([MIXED * 3 + SILENT, MIXED * 4, MIXED * 4])
    trainer = scripted_trainer(
        tiny_model_dir, tmp_path, reward, use_cpu=False, bf16=True, gradient_checkpointing=True, max_steps=8
    )
    steps = record_steps(trainer)
    snapshots = {}
    start = trainer._start_step

    def snapshot(inputs):
        snapshots[trainer.state.global_step] = params(trainer.model)
        start(inputs)

    trainer._start_step = snapshot
    trainer.train()
    assert next(trainer.model.parameters()).is_cuda
    assert [len(steps.get(s, [])) for s in range(8)] == [0, 0, 0, 0, 4, 4, 4, 2]
    same = lambda a, b: all(torch.equal(a[n], b[n]) for n in a)  # noqa: E731
    assert all(same(snapshots[s], snapshots[s + 1]) for s in range(3)), "held steps moved the weights"
    assert not any(same(snapshots[s], snapshots[s + 1]) for s in range(4, 7)), "an update step did not train"
    assert all(math.isfinite(h["loss"]) for h in trainer.state.log_history if "loss" in h)
