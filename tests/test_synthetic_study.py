"""``scripts/synthetic_study.py``: a tiny study end to end, its resume, and the pattern checks."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("synthetic_study", ROOT / "scripts" / "synthetic_study.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


# A 1-layer base model on 600 examples, 2 generation batches per run, 8 test theorems x 4 samples.
TINY = [
    "--seeds",
    "[0]",
    "--variants",
    "[grpo, grpo+unlikeliness-2updates]",
    "--generation_steps",
    "2",
    "--theorems_per_step",
    "2",
    "--num_generations",
    "4",
    "--eval_samples",
    "4",
    "--rank_bias_problems",
    "2",
    "--rank_bias_samples",
    "4",
    "--task.options.test_size",
    "8",
    "--task.options.train_size",
    "16",
    "--task.options.probe_size",
    "4",
    "--task.options.base_model.steps",
    "30",
    "--task.options.base_model.examples",
    "600",
    "--task.options.base_model.hidden_size",
    "32",
    "--task.options.base_model.layers",
    "1",
    "--task.options.base_model.batch_size",
    "16",
]


def test_tiny_study_runs_reports_and_resumes(study, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROVER_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "study"
    assert study.main(["--out_dir", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "table:" in printed and "pass@k plot:" in printed

    results = json.loads((out / "results.json").read_text())
    assert results["ks"] == [1, 2, 4]
    assert set(results["labels"]) == {"base", "grpo", "grpo+unlikeliness-2updates"}
    for entry in results["labels"].values():
        cell = entry["all"]["4"]
        assert 0.0 <= cell["low"] <= cell["mean"] <= cell["high"] <= 1.0 and cell["problems"] == 8
        assert entry["easy"]["1"]["problems"] + entry["rare"]["1"]["problems"] == 8
    assert results["labels"]["grpo"]["uplift"]["counts"]  # the probe ran and was pooled
    # 2 updates per batch: twice the optimizer steps on the same generation budget
    assert (out / "grpo" / "seed0" / "checkpoint-2").is_dir()
    assert (out / "grpo+unlikeliness-2updates" / "seed0" / "checkpoint-4").is_dir()
    table = (out / "table.md").read_text()
    assert "| grpo+unlikeliness-2updates | 1 | all (8) |" in table
    for plot in ("passk.png", "uplift.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    info = json.loads((out / "run_info.json").read_text())
    assert info["seeds"]["seeds"] == [0] and Path(info["base_model"]).is_dir() and "trl" in info["packages"]

    # Rerunning skips every finished run and rebuilds the same report.
    before = (out / "grpo" / "seed0" / "eval" / "summary.json").stat().st_mtime_ns
    assert study.main(["--out_dir", str(out), *TINY]) == 0
    assert printed.count(" seed 0 -> ") == 2 and capsys.readouterr().out.count("seed 0: done, skipped") == 2
    assert (out / "grpo" / "seed0" / "eval" / "summary.json").stat().st_mtime_ns == before
    assert json.loads((out / "results.json").read_text())["labels"] == results["labels"]


def test_bad_variant_is_named(study, capsys):
    assert study.main(["--variants", "[grpo, ppo]"]) == 2
    assert "ppo" in capsys.readouterr().err


def _results(base, grpo, unlikely, base_rare, grpo_rare, unlikely_rare, grpo_uplift, unlikely_uplift):
    def entry(first, top, rare, uplift=None):
        cell = lambda m: {"mean": m, "low": m - 0.02, "high": m + 0.02}  # noqa: E731
        return {
            "all": {"1": cell(first), "256": cell(top)},
            "rare": {"256": cell(rare)},
            "uplift": {"rates": uplift} if uplift else None,
        }

    return {
        "ks": [1, 256],
        "labels": {
            "base": entry(base[0], base[1], base_rare),
            "grpo": entry(grpo[0], grpo[1], grpo_rare, grpo_uplift),
            "grpo+unlikeliness": entry(unlikely[0], unlikely[1], unlikely_rare, unlikely_uplift),
        },
    }


def test_pattern_checks_follow_the_numbers(study):
    paper = _results(
        base=(0.6, 0.9),
        grpo=(0.8, 0.85),
        unlikely=(0.78, 0.93),
        base_rare=0.7,
        grpo_rare=0.5,
        unlikely_rare=0.75,
        grpo_uplift=[0.2, 0.3, 0.5, 0.6],
        unlikely_uplift=[0.4, 0.4, 0.4, 0.45],
    )
    checks = study.pattern_checks(paper)
    assert len(checks) == 5 and all(c["holds"] for c in checks)  # the 2-update pair is absent: not claimed

    flipped = _results(
        base=(0.6, 0.9),
        grpo=(0.5, 0.95),
        unlikely=(0.7, 0.8),
        base_rare=0.7,
        grpo_rare=0.8,
        unlikely_rare=0.6,
        grpo_uplift=[0.6, 0.5, 0.4, 0.3],
        unlikely_uplift=[0.2, 0.4, 0.6, 0.8],
    )
    assert not any(c["holds"] for c in study.pattern_checks(flipped))
