"""``torchrun`` with 2 CPU processes (gloo) runs the GRPO recipe and shapes the rewards as one process
does: each generation step sees the same theorems in the same order as a 1-process run with the same
global batch and seed, every process computes the same shaped rewards from the gathered groups, and
those are what the unlikeliness function gives for the gathered batch in a single process. With the
dynamic update on, processes that hold different numbers of rows (one none) hold, train and resume."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from prover.rl.unlikeliness import shape_rewards

# Wraps the two functions whose inputs and outputs the test compares, then runs prover.train as is.
HARNESS = textwrap.dedent("""
    import json, os, sys
    import prover.rl.rewards as rewards
    import prover.rl.trainer as trainer

    LOG = os.environ["SHAPING_LOG"] + "." + os.environ.get("RANK", "0")
    shape, call = trainer.shape_rewards, rewards.ProofReward.__call__

    def write(record):
        with open(LOG, "a") as f:
            f.write(json.dumps(record) + "\\n")

    def recording_shape(raw, keys, group, beta, rank_set, ids):
        shaped, factors = shape(raw, keys, group, beta, rank_set, ids)
        write({"shape": {"raw": raw.tolist(), "keys": keys.tolist(), "group": group, "beta": beta,
                         "rank_set": rank_set, "ids": ids.tolist(), "shaped": shaped.tolist()}})
        return shaped, factors

    def recording_call(self, prompts, completions, name, *args, **kwargs):
        write({"names": list(name)})
        return call(self, prompts, completions, name, *args, **kwargs)

    trainer.shape_rewards, rewards.ProofReward.__call__ = recording_shape, recording_call
    from prover.train import main
    sys.exit(main(sys.argv[1:]))
""")

# 4 theorems x 8 samples = 32 proofs per generation step; 4 optimizer steps = 2 generation steps x 2 epochs.
GLOBAL_BATCH = 32
SETTINGS = [
    "--config",
    "recipes/synthetic/grpo-unlikeliness/cpu.yaml",
    "--grpo.max_steps",
    "4",
    "--grpo.num_generations",
    "8",
    "--grpo.num_iterations",
    "2",
    "--grpo.logging_steps",
    "1",
    "--grpo.save_steps",
    "100",
    "--grpo.disable_tqdm",
    "true",
    "--grpo.dynamic_update",
    "false",
    "--eval.enabled",
    "false",
    "--rank_bias.enabled",
    "false",
]
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(harness: Path, processes: int, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run ``harness`` in ``processes`` CPU processes (gloo) with ``args``; fail the test if it fails."""
    # Not `accelerate launch --cpu --num_processes 2`: on CPU it starts several processes only through MPI.
    argv = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
            "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(harness), *args]  # fmt: skip
    # One thread per process: two processes on two cores, no oversubscription.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", **env}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    return done


def launch(tmp_path: Path, processes: int) -> dict[int, list[dict]]:
    """Train with ``processes`` CPU processes; the records each process logged, by rank."""
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS)
    out = tmp_path / f"np{processes}"
    log = tmp_path / f"shaping-np{processes}"
    args = [
        *SETTINGS,
        "--grpo.output_dir",
        str(out),
        "--grpo.per_device_train_batch_size",
        str(GLOBAL_BATCH // processes),
    ]
    torchrun(harness, processes, args, {"SHAPING_LOG": str(log)})
    assert (out / "final" / "config.json").is_file()
    return read_logs(log, processes)


def read_logs(log: Path, processes: int) -> dict[int, list[dict]]:
    return {
        rank: [json.loads(line) for line in Path(f"{log}.{rank}").read_text().splitlines()] for rank in range(processes)
    }


def shapings(records: list[dict]) -> list[dict]:
    return [r["shape"] for r in records if "shape" in r]


def names(records: list[dict]) -> list[list[str]]:
    return [r["names"] for r in records if "names" in r]


@pytest.mark.slow
def test_two_processes_shape_rewards_as_one(tmp_path):
    one = launch(tmp_path, 1)
    two = launch(tmp_path, 2)
    steps = shapings(one[0])
    assert len(steps) == 2 and len(shapings(two[0])) == 2  # one shaping per generation step

    # The same theorems, in the same order: rank 0 holds the first half of each global batch, rank 1 the rest.
    assert [a + b for a, b in zip(names(two[0]), names(two[1]), strict=True)] == names(one[0])
    assert all(len(batch) == GLOBAL_BATCH // 2 for batch in names(two[0]) + names(two[1]))

    # Both processes shaped the same gathered groups identically (their advantages must agree).
    assert shapings(two[0]) == shapings(two[1])
    for step in shapings(two[0]):
        assert len(step["raw"]) == GLOBAL_BATCH and step["group"] == 8 and step["beta"] == 0.25
        raw, keys, ids = torch.tensor(step["raw"]), torch.tensor(step["keys"]), torch.tensor(step["ids"])
        # One process shaping the whole gathered batch, and shaping each group on its own, agree with it.
        alone, _ = shape_rewards(raw, keys, 8, 0.25, step["rank_set"], ids)
        torch.testing.assert_close(alone, torch.tensor(step["shaped"]))
        for g in range(0, GLOBAL_BATCH, 8):
            part, _ = shape_rewards(raw[g : g + 8], keys[g : g + 8], 8, 0.25, step["rank_set"], ids[g : g + 8])
            torch.testing.assert_close(part, torch.tensor(step["shaped"][g : g + 8]))
    # The runs learned something to shape: some correct proofs were scaled down by their rank.
    shaped = [(r, s) for step in shapings(two[0]) + steps for r, s in zip(step["raw"], step["shaped"])]
    assert any(r == 1.0 and s < 1.0 for r, s in shaped)


# ---- the dynamic update with 2 processes -------------------------------------------------------------

# Scripted rewards (every group of 8 has signal: 1, 0, 1, 0, ...), except that in the first launch the
# second process's first batch all fails: it holds no rows while the first holds 16. Records what each
# process collected and, per optimizer step, whether it was held, the real rows of each micro-batch and
# a checksum of the weights before the step.
DYNAMIC_HARNESS = textwrap.dedent("""
    import json, os, sys
    import torch
    import prover.rl.rewards as rewards
    import prover.rl.trainer as trainer

    RANK = int(os.environ.get("RANK", "0"))
    LOG = os.environ["DYNAMIC_LOG"] + "." + str(RANK)
    calls = []

    def write(record):
        with open(LOG, "a") as f:
            f.write(json.dumps(record) + "\\n")

    def scripted(self, prompts, completions, name, *args, **kwargs):
        calls.append(len(completions))
        silent = os.environ.get("SILENT_FIRST_BATCH") == str(RANK) and len(calls) == 1
        return [0.0 if silent else float(i % 2 == 0) for i in range(len(completions))]

    rewards.ProofReward.__call__ = scripted
    cls = trainer.UnlikelinessGRPOTrainer
    if hasattr(cls, "_collect"):  # absent before the fix: the run then goes on to fail in TRL's gather
        collect, start = cls._collect, cls._start_step

        def recording_collect(self, inputs):
            collect(self, inputs)
            write({"collect": len(self._buffer[-1]["advantages"]) if self._buffer else None,
                   "buffer_size": self._buffer_size})

        def recording_start(self, inputs):
            checksum = sum(p.detach().double().sum().item() for p in self.model.parameters())
            start(self, inputs)
            micro = [[int(m["completion_mask"].bool().any(-1).sum()), len(m["advantages"])] for m in self._slot or []]
            write({"step": self.state.global_step, "held": self._slot is None, "micro": micro, "checksum": checksum})

        cls._collect, cls._start_step = recording_collect, recording_start
    from prover.train import main
    sys.exit(main(sys.argv[1:]))
""")

# 4 theorems x 8 samples = 32 per generation batch; 8 per micro-batch x 2 processes x 2 accumulation = 32
# samples per optimizer step; 24 with signal start an update. TRL's schedule: 32 / (8 x 2) = 2 micro-steps
# per pass, 1 optimizer step, x 2 epochs = 2 optimizer steps per generation batch.
DYNAMIC_SETTINGS = [
    "--config",
    "recipes/synthetic/grpo-unlikeliness/cpu.yaml",
    "--grpo.num_generations",
    "8",
    "--grpo.generation_batch_size",
    "32",
    "--grpo.per_device_train_batch_size",
    "8",
    "--grpo.gradient_accumulation_steps",
    "2",
    "--grpo.num_iterations",
    "2",
    "--grpo.dynamic_update",
    "true",
    "--grpo.dynamic_update_size",
    "24",
    "--grpo.save_steps",
    "2",
    "--grpo.logging_steps",
    "1",
    "--grpo.lr_scheduler_type",
    "constant",  # a linear decay to max_steps = 2 would end launch 1 at learning rate 0
    "--grpo.disable_tqdm",
    "true",
    "--eval.enabled",
    "false",
    "--rank_bias.enabled",
    "false",
]


def launch_dynamic(tmp_path: Path, max_steps: int, silent_rank: int | None, *extra: str) -> subprocess.CompletedProcess:
    harness = tmp_path / "dynamic_harness.py"
    harness.write_text(DYNAMIC_HARNESS)
    args = [*DYNAMIC_SETTINGS, "--grpo.output_dir", str(tmp_path / "run"), "--grpo.max_steps", str(max_steps), *extra]
    env = {
        "DYNAMIC_LOG": str(tmp_path / "dynamic"),
        "SILENT_FIRST_BATCH": "" if silent_rank is None else str(silent_rank),
    }
    return torchrun(harness, 2, args, env)


@pytest.mark.slow
def test_two_processes_hold_train_and_resume_with_the_dynamic_update(tmp_path):
    """Launch 1 (2 optimizer steps): process 0 keeps 16 rows, process 1 none: 16 < 24, both steps held,
    weights untouched, the rows saved in checkpoint-2. Launch 2 resumes there (to step 6): 32 more rows,
    B = 48: ceil(48 / 32) = 2 optimizer steps of 32 and 16 rows per epoch, 4 in all, dealt evenly over
    both processes although one brought 32 rows of them and the other 16."""
    launch_dynamic(tmp_path, max_steps=2, silent_rank=1)
    first = read_logs(tmp_path / "dynamic", 2)
    collected = {rank: [r["collect"] for r in first[rank] if "collect" in r] for rank in (0, 1)}
    assert collected == {0: [16], 1: [0]}
    for rank in (0, 1):
        steps = [r for r in first[rank] if "step" in r]
        assert [(r["step"], r["held"]) for r in steps] == [(0, True), (1, True)]
    checkpoint = tmp_path / "run" / "checkpoint-2"
    saved = {rank: torch.load(checkpoint / f"dynamic_buffer_{rank}.pt") for rank in (0, 1)}
    assert [len(saved[r]["rows"][0]["advantages"]) for r in (0, 1)] == [16, 0]
    assert saved[0]["size"] == saved[1]["size"] == 16

    for rank in (0, 1):
        Path(f"{tmp_path / 'dynamic'}.{rank}").unlink()
    second = launch_dynamic(tmp_path, 6, None, "--resume_changed")  # 4 more steps, continued on purpose
    assert "resumed the dynamic update: 16 samples with signal" in second.stderr
    logs = read_logs(tmp_path / "dynamic", 2)
    steps = {rank: [r for r in logs[rank] if "step" in r] for rank in (0, 1)}
    assert [r["step"] for r in steps[0]] == [2, 3, 4, 5] and not any(r["held"] for r in steps[0] + steps[1])
    assert steps[0][0]["checksum"] == pytest.approx(next(r for r in first[0] if "step" in r)["checksum"], abs=0)
    per_step = []
    for a, b in zip(steps[0], steps[1], strict=True):
        assert [m[1] for m in a["micro"]] == [m[1] for m in b["micro"]], "equal rows per micro-batch on both"
        per_step.append(sum(m[0] for m in a["micro"] + b["micro"]))
    assert per_step == [32, 16, 32, 16]
    checksums = [r["checksum"] for r in steps[0]]
    assert len(set(checksums)) == 4, "every update step moved the weights"
    state = json.loads((tmp_path / "run" / "checkpoint-6" / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    # the prompts that arrived during the 4-step update (step 4) wait for the next one
    assert len(torch.load(tmp_path / "run" / "checkpoint-6" / "dynamic_buffer_0.pt")["pending"]) == 1
