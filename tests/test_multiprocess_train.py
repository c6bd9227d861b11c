"""``torchrun`` with 2 CPU processes (gloo) runs the GRPO recipe and shapes the rewards as one process
does: each generation step sees the same theorems in the same order as a 1-process run with the same
global batch and seed, every process computes the same shaped rewards from the gathered groups, and
those are what the unlikeliness function gives for the gathered batch in a single process."""

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
SETTINGS = ["--config", "recipes/synthetic/grpo-unlikeliness/cpu.yaml", "--grpo.max_steps", "4",
            "--grpo.num_generations", "8", "--grpo.num_iterations", "2",
            "--grpo.logging_steps", "1", "--grpo.save_steps", "100", "--grpo.disable_tqdm", "true",
            "--grpo.dynamic_update", "false", "--eval.enabled", "false", "--rank_bias.enabled", "false"]
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path: Path, processes: int) -> dict[int, list[dict]]:
    """Train with ``processes`` CPU processes; the records each process logged, by rank."""
    harness = tmp_path / "harness.py"
    harness.write_text(HARNESS)
    out = tmp_path / f"np{processes}"
    log = tmp_path / f"shaping-np{processes}"
    # Not `accelerate launch --cpu --num_processes 2`: on CPU it starts several processes only through MPI.
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(processes),
                "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    argv = [*torchrun, str(harness), *SETTINGS, "--grpo.output_dir", str(out),
            "--grpo.per_device_train_batch_size", str(GLOBAL_BATCH // processes)]
    # One thread per process: two processes on two cores, no oversubscription.
    env = {**os.environ, "SHAPING_LOG": str(log), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert (out / "final" / "config.json").is_file()
    return {rank: [json.loads(line) for line in Path(f"{log}.{rank}").read_text().splitlines()]
            for rank in range(processes)}


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
            part, _ = shape_rewards(raw[g:g + 8], keys[g:g + 8], 8, 0.25, step["rank_set"], ids[g:g + 8])
            torch.testing.assert_close(part, torch.tensor(step["shaped"][g:g + 8]))
    # The runs learned something to shape: some correct proofs were scaled down by their rank.
    shaped = [(r, s) for step in shapings(two[0]) + steps for r, s in zip(step["raw"], step["shaped"])]
    assert any(r == 1.0 and s < 1.0 for r, s in shaped)
