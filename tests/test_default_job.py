"""``python -m prover.train`` without a recipe: the default job, here shrunk to a minute."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from prover.config import load_config, to_dict
from prover.train import TrainConfig, default_job_settings, machine_defaults, main

ROOT = Path(__file__).resolve().parents[1]

# Everything small: a 1-layer base model trained for 40 steps, 2 GRPO steps, 8 test theorems x 4 samples.
SMALL = [
    "--task.options.base_model.steps", "40", "--task.options.base_model.examples", "600",
    "--task.options.base_model.hidden_size", "32", "--task.options.base_model.layers", "1",
    "--task.options.base_model.batch_size", "16",
    "--grpo.max_steps", "2", "--grpo.num_generations", "4", "--grpo.per_device_train_batch_size", "8",
    "--grpo.max_completion_length", "16", "--grpo.logging_steps", "1", "--grpo.save_steps", "2",
    "--grpo.dynamic_update_size", "4",
    "--eval.limit", "8", "--eval.samples", "4",
    "--rank_bias.problems", "2", "--rank_bias.samples", "4", "--rank_bias.every", "1",
]


def test_cpu_recipe_is_the_default_job():
    recipe = load_config(TrainConfig, ["--config", str(ROOT / "recipes/synthetic/grpo-unlikeliness/cpu.yaml")],
                         defaults={"grpo": machine_defaults()})
    assert to_dict(recipe) == to_dict(load_config(TrainConfig, [], defaults=default_job_settings()))


@pytest.mark.parametrize("recipe", sorted(p.relative_to(ROOT) for p in (ROOT / "recipes").glob("*/*/*.yaml")
                                          if p.parts[-3] != "eval"))
def test_recipes_load(recipe, monkeypatch):
    """Every training recipe parses into a TrainConfig (on a CPU-only machine with bf16 off: transformers
    refuses bf16 without a GPU when the arguments are built)."""
    monkeypatch.chdir(ROOT)
    config = load_config(TrainConfig, ["--config", str(recipe), "--grpo.bf16", "false"],
                         defaults={"grpo": machine_defaults()})
    assert config.grpo.num_generations >= 2 and config.grpo.output_dir.startswith("runs/")


def test_bad_override_is_named(capsys):
    assert main(["--grpo.beta_rnk", "0.5"]) == 2
    assert "beta_rnk" in capsys.readouterr().err


def test_default_job_small(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROVER_CACHE_DIR", str(tmp_path / "cache"))
    run_dir = tmp_path / "run"
    assert main(["--grpo.output_dir", str(run_dir), *SMALL]) == 0
    out = capsys.readouterr().out
    assert "default job" in out and "pass@k plot:" in out and "accelerate launch" in out
    assert "before" in out and "after" in out  # the comparison table's columns
    plot = run_dir / "passk_before_after.png"
    assert plot.read_bytes()[:4] == b"\x89PNG"
    for name in ("eval_before", "eval_after"):
        assert (run_dir / name).is_dir()
    assert (run_dir / "final" / "config.json").is_file() and (run_dir / "checkpoint-2").is_dir()
    info = json.loads((run_dir / "run_info.json").read_text())
    assert info["seeds"]["seed"] == 0 and "trl" in info["packages"]
    assert len((run_dir / "rank_bias.jsonl").read_text().splitlines()) == 2  # every step
    assert (run_dir / "rank_bias.png").is_file()
