"""``python -m prover.train`` as a user meets it: the default job (shrunk to a minute) with its table and
plots, reruns that resume or are refused, bad input answered before anything is written, the run-directory
lock, Ctrl-C and resume, logs in a file, report_to."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prover.config import load_config, to_dict
from prover.eval.summary import Summary
from prover.train import DEFAULT_JOB, TrainConfig, default_job_settings, machine_defaults, main

ROOT = Path(__file__).resolve().parents[1]

# A synthetic task small enough for a 1-layer base model trained for 100 steps (seconds) to prove some
# theorems, so that groups carry signal and training changes the model: 32 train / 16 test theorems.
OPTIONS = (
    "{max_value: 16, start_max: 6, min_budget: 1, max_budget: 2, test_size: 16, train_size: 32, probe_size: 8, "
    "rare_fraction: 0.0, base_model: {steps: 100, examples: 1000, hidden_size: 32, layers: 1, batch_size: 32}}"
)
# 8 steps of 4 theorems x 4 samples per variant, checkpoints every 4; 16 test theorems x 4 samples.
SMALL = [
    "--task.options",
    OPTIONS,
    "--grpo.max_steps",
    "8",
    "--grpo.num_generations",
    "4",
    "--grpo.per_device_train_batch_size",
    "16",
    "--grpo.logging_steps",
    "2",
    "--grpo.save_steps",
    "4",
    "--grpo.dynamic_update_size",
    "4",
    "--eval.samples",
    "4",
    "--rank_bias.problems",
    "8",
    "--rank_bias.samples",
    "4",
    "--rank_bias.every",
    "4",
]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache of synthetic base models for the module (the small base model is built once)."""
    path = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROVER_CACHE_DIR", str(path))
        yield path


def run_main(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` with its stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, out.getvalue(), err.getvalue()


def listing(path: Path) -> dict[str, float]:
    """Every file under ``path`` with its modification time (what a refused launch must leave alone)."""
    return {str(p.relative_to(path)): p.stat().st_mtime_ns for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(cache, tmp_path_factory):
    """The small default job, run to the end once: (run directory, stdout)."""
    run_dir = tmp_path_factory.mktemp("job") / "default-job"
    rc, out, err = run_main(["--grpo.output_dir", str(run_dir), *SMALL])
    assert rc == 0, err[-3000:]
    return run_dir, out


# ---- the recipes ----


def test_cpu_recipe_is_the_default_job():
    """The CPU recipe holds the default job's settings; the job adds plain GRPO beside it, in its own directory."""
    recipe = load_config(
        TrainConfig,
        [
            "--config",
            str(ROOT / "recipes/synthetic/grpo-unlikeliness/cpu.yaml"),
            "--compare_plain_grpo",
            "--grpo.output_dir",
            DEFAULT_JOB["grpo"]["output_dir"],
        ],
        defaults={"grpo": machine_defaults()},
    )
    job = load_config(TrainConfig, [], defaults=default_job_settings())
    assert to_dict(recipe) == to_dict(job)
    # the variant the synthetic study supports: one update per generated batch, 400 generation steps
    assert (job.grpo.num_iterations, job.grpo.max_steps, job.compare_plain_grpo) == (1, 400, True)


@pytest.mark.parametrize(
    "recipe", sorted(p.relative_to(ROOT) for p in (ROOT / "recipes").glob("*/*/*.yaml") if p.parts[-3] != "eval")
)
def test_recipes_load(recipe, monkeypatch):
    """Every training recipe parses into a TrainConfig (on a CPU-only machine with bf16 off: transformers
    refuses bf16 without a GPU when the arguments are built)."""
    monkeypatch.chdir(ROOT)
    config = load_config(
        TrainConfig, ["--config", str(recipe), "--grpo.bf16", "false"], defaults={"grpo": machine_defaults()}
    )
    assert config.grpo.num_generations >= 2 and config.grpo.output_dir.startswith("runs/")


def test_bad_override_is_named(capsys):
    assert main(["--grpo.beta_rnk", "0.5"]) == 2
    assert "beta_rnk" in capsys.readouterr().err


# ---- the default job: base / GRPO / GRPO + unlikeliness ----


def test_default_job_shows_base_grpo_and_unlikeliness(finished):
    run_dir, out = finished
    assert "default job" in out and "accelerate launch" in out
    table = out[out.index("┏") :]
    header = table.splitlines()[1]
    assert header.index("base") < header.index("GRPO") < header.index("GRPO + unlikeliness")  # side by side
    assert "Δ GRPO + unlikeliness" in table
    for name in ("passk.png", "rank_bias.png"):
        assert (run_dir / name).read_bytes()[:4] == b"\x89PNG"
    assert f"pass@k plot: {run_dir / 'passk.png'}" in out and f"rank-bias plot: {run_dir / 'rank_bias.png'}" in out
    assert (run_dir / "eval_before" / "summary.json").is_file()  # the base, evaluated once for both
    for variant, unlikely in (("grpo", False), ("grpo-unlikeliness", True)):
        v = run_dir / variant
        assert (v / "final" / "config.json").is_file() and (v / "checkpoint-8").is_dir()
        assert (v / "eval_after" / "summary.json").is_file()
        assert len((v / "rank_bias.jsonl").read_text().splitlines()) == 2  # steps 4 and 8
        assert json.loads((v / "checkpoint-8" / "trainer_state.json").read_text())["global_step"] == 8
        logged = set().union(*json.loads((v / "checkpoint-8" / "trainer_state.json").read_text())["log_history"])
        assert ("time/rank" in logged) == unlikely  # only the unlikeliness run ranks its samples
        card = (v / "final" / "README.md").read_text()
        assert ("GRPO and the unlikeliness reward" in card) == unlikely
    info = json.loads((run_dir / "run_info.json").read_text())
    assert (
        info["seeds"]["seed"] == 0
        and "trl" in info["packages"]
        and info["command"].startswith("python -m prover.train")
    )
    # both runs start from the same model with the same seed: the same probe, so their curves compare
    probe = lambda variant: json.loads((run_dir / variant / "rank_bias_probe.json").read_text())  # noqa: E731
    assert probe("grpo") == probe("grpo-unlikeliness") and probe("grpo")["samples"]


def test_model_card_says_what_was_trained_and_how_well(finished):
    run_dir, _ = finished
    card = (run_dir / "grpo-unlikeliness" / "final" / "README.md").read_text()
    assert "fine-tuned version of" not in card and "time machine" not in card  # TRL's boilerplate is gone
    assert "**Base model**" in card and str(Path(os.environ["PROVER_CACHE_DIR"])) in card
    assert "`synthetic`" in card and "| beta_rank | 0.25" in card and "| samples per theorem (G) | 4 |" in card
    assert "| k | base | this model | Δ (paired 95% interval) |" in card and "\n| 4 | " in card
    assert f"python -m prover.train --grpo.output_dir {run_dir}" in card
    assert (run_dir / "grpo-unlikeliness" / "README.md").read_text() == card


def test_rerun_with_the_same_settings_trains_nothing_again(finished):
    run_dir, out = finished
    before = listing(run_dir / "grpo-unlikeliness" / "final")
    rc, again, err = run_main(["--grpo.output_dir", str(run_dir), *SMALL])
    assert rc == 0, err
    assert listing(run_dir / "grpo-unlikeliness" / "final") == before
    table = lambda text: text[text.index("┏") : text.index("pass@k plot")]  # noqa: E731
    assert table(again) == table(out)


# ---- refused launches: one line, exit 2, nothing written, no model loaded ----


@pytest.mark.parametrize(
    "bad, says",
    [
        (["--grpo.learning_rate", "1e-5"], "grpo.learning_rate: 0.0002 there, 1e-05 now"),
        (["--task.dataset", "nonexist"], "task.dataset 'nonexist'"),
        (["--eval.dataset", "tset"], "eval.dataset 'tset'"),
        (["--model", "/nonexistent/model"], "model"),
        (["--eval.samples", "0"], "samples must be >= 1, got 0"),
        (["--rank_bias.samples", "1"], "samples must be >= 2, got 1"),
        (["--grpo.report_to", "no_such_tracker"], "unknown integration 'no_such_tracker'"),
    ],
)
def test_bad_launch_is_one_line_and_writes_nothing(finished, tmp_path, monkeypatch, bad, says):
    """Into a finished run: its record stays as it was. The synthetic base model is not even built (an
    empty cache stays empty): the checks come first."""
    run_dir, _ = finished
    monkeypatch.setenv("PROVER_CACHE_DIR", str(tmp_path / "empty-cache"))
    before = listing(run_dir)
    rc, _, err = run_main(["--grpo.output_dir", str(run_dir), *SMALL, *bad])
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("prover.train: ") and says in lines[0], err
    assert listing(run_dir) == before
    assert not (tmp_path / "empty-cache").exists()


def test_changed_settings_name_both_ways_out(finished):
    run_dir, _ = finished
    rc, _, err = run_main(["--grpo.output_dir", str(run_dir), *SMALL, "--grpo.beta_rank", "0.5"])
    assert rc == 2
    assert "grpo.beta_rank: 0.25 there, 0.5 now" in err
    assert "another --grpo.output_dir" in err and "--resume_changed" in err


def test_report_to_needs_its_package(finished, monkeypatch):
    """The Lean recipes report to TensorBoard: without the package the launch stops before any model loads."""
    import importlib.util

    run_dir, _ = finished
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.split(".")[0] in ("tensorboard", "tensorboardX") else real(name, *a),
    )
    rc, _, err = run_main(["--grpo.output_dir", str(run_dir), *SMALL, "--grpo.report_to", "tensorboard"])
    assert rc == 2 and "tensorboard is not installed (pip install -e '.[tensorboard]')" in err


def test_report_to_tensorboard_writes_events(cache, tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    run_dir = tmp_path / "tb"
    rc, _, err = run_main(
        [
            "--grpo.output_dir",
            str(run_dir),
            *SMALL,
            "--compare_plain_grpo",
            "false",
            "--eval.enabled",
            "false",
            "--rank_bias.enabled",
            "false",
            "--grpo.max_steps",
            "2",
            "--grpo.report_to",
            "tensorboard",
        ]
    )
    assert rc == 0, err
    assert list(run_dir.rglob("events.out.tfevents.*"))


# ---- one job per run directory ----

HOLDER = """
import sys, time
from prover.run_lock import RunLock
RunLock(sys.argv[1]).acquire()
print("held", flush=True)
time.sleep(120)
"""


def test_second_job_is_told_who_holds_the_directory_and_takes_over_a_dead_one(cache, tmp_path, caplog):
    run_dir = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(run_dir)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        quick = [
            "--grpo.output_dir",
            str(run_dir),
            *SMALL,
            "--compare_plain_grpo",
            "false",
            "--eval.enabled",
            "false",
            "--rank_bias.enabled",
            "false",
            "--grpo.max_steps",
            "1",
        ]
        rc, _, err = run_main(quick)
        assert rc == 2 and f"{run_dir} is in use by another job: pid {holder.pid} on host" in err
        assert not (run_dir / "config.yaml").exists()
    finally:
        holder.kill()  # dies holding the lock: the file stays, the flock goes
        holder.wait()
    assert (run_dir / ".lock").is_file()
    rc, _, err = run_main(quick)
    assert rc == 0, err
    assert f"taking over the stale lock of {run_dir} left by pid {holder.pid}" in caplog.text
    assert not (run_dir / ".lock").exists() and (run_dir / "final" / "config.json").is_file()


# ---- Ctrl-C, resume, and the logs of a job that is not on a terminal ----


@pytest.fixture(scope="module")
def interrupted(cache, finished, tmp_path_factory):
    """The small default job as a user runs it with its output going to a file, Ctrl-C pressed once the
    GRPO + unlikeliness run has a checkpoint: (run directory, stdout, stderr, exit status)."""
    run_dir = tmp_path_factory.mktemp("interrupted") / "default-job"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    out_path, err_path = run_dir.parent / "stdout.txt", run_dir.parent / "stderr.txt"
    with out_path.open("w") as out, err_path.open("w") as err:
        # A job started from a background shell inherits an ignored SIGINT; a user's terminal job does not.
        job = subprocess.Popen(
            [sys.executable, "-m", "prover.train", "--grpo.output_dir", str(run_dir), *SMALL],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 600
        while not list((run_dir / "grpo-unlikeliness").glob("checkpoint-*")) and job.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint of the second run within 10 minutes"
            time.sleep(0.05)
        job.send_signal(signal.SIGINT)
        rc = job.wait(timeout=120)
    return run_dir, out_path.read_text(), err_path.read_text(), rc


@pytest.mark.slow
def test_ctrl_c_prints_one_line_with_the_resume_command(interrupted):
    run_dir, _, err, rc = interrupted
    assert rc == 130 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("prover.train: interrupted (last checkpoint ")
    assert last.endswith(
        f"resume with: python -m prover.train --grpo.output_dir {run_dir} --task.options '{OPTIONS}' "
        + " ".join(SMALL[2:])
    )


@pytest.mark.slow
def test_resumed_job_ends_where_the_uninterrupted_one_did(interrupted, finished):
    run_dir, _, _, _ = interrupted
    reference, _ = finished
    rc, _, err = run_main(["--grpo.output_dir", str(run_dir), *SMALL])
    assert rc == 0, err
    for variant in ("grpo", "grpo-unlikeliness"):
        a = load_file(reference / variant / "final" / "model.safetensors")
        b = load_file(run_dir / variant / "final" / "model.safetensors")
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), variant
        for name in ("solved_proofs.jsonl", "rank_bias.jsonl"):
            assert (run_dir / variant / name).read_text() == (reference / variant / name).read_text(), name
        # everything but timing and the count of torn lines a Ctrl-C during the evaluation leaves
        assert (
            Summary.load(run_dir / variant / "eval_after").results()
            == Summary.load(reference / variant / "eval_after").results()
        )


@pytest.mark.slow
def test_logs_are_short_lines_when_not_on_a_terminal(interrupted):
    _, out, err, _ = interrupted
    assert "\r" not in out + err  # no progress bars redrawn into the file
    assert "{'loss'" not in out + err  # no metric dicts
    assert "step 2/8 (25%)" in err and "· solved " in err
    assert "Triton" not in err and "Setting accelerator to CPU" not in out + err
    solved = [line.split("· solved ")[1].split()[0] for line in err.splitlines() if "· solved " in line]
    assert solved and all(s.isdigit() for s in solved)  # a count is logged as a count


def test_lock_is_exclusive_between_open_files_and_released_once(tmp_path):
    from prover.run_lock import RunDirBusy, RunLock

    first = RunLock(tmp_path / "run").acquire()
    with pytest.raises(RunDirBusy, match=f"pid {os.getpid()} on host"):
        RunLock(tmp_path / "run").acquire()  # another open file of the same lock: refused even in one process
    first.release()
    first.release()  # twice is harmless
    assert not (tmp_path / "run" / ".lock").exists()
    with RunLock(tmp_path / "run"):
        assert json.loads((tmp_path / "run" / ".lock").read_text())["pid"] == os.getpid()


def test_settings_that_only_change_how_a_run_is_watched_may_change():
    from prover.run_settings import changed_settings

    recorded = {
        "grpo": {"learning_rate": 2e-4, "logging_steps": 20, "report_to": [], "output_dir": "a"},
        "eval": {"enabled": True, "samples": 256},
    }
    now = {
        "grpo": {
            "learning_rate": 2e-4,
            "logging_steps": 1,
            "report_to": ["tensorboard"],
            "output_dir": "b",
            "new_field": 3,
        },
        "eval": {"enabled": False, "samples": 256},
    }
    changed = changed_settings(recorded, now)
    assert list(changed) == ["grpo.new_field"]  # a setting the recorded run did not have counts as a change


def test_attempt_cut_before_its_first_checkpoint_starts_over_exactly(finished, tmp_path):
    """What Ctrl-C leaves before the first checkpoint of the GRPO + unlikeliness run: its probe, proofs and
    rank-bias lines, and a checkpoint whose save was cut short. The rerun starts over and ends as the
    uninterrupted job did (a probe read back instead of drawn would leave the RNG elsewhere)."""
    import shutil

    reference, _ = finished
    run_dir = tmp_path / "default-job"
    shutil.copytree(reference, run_dir)
    unlikely = run_dir / "grpo-unlikeliness"
    for name in ("final", "eval_after", "checkpoint-8"):
        shutil.rmtree(unlikely / name)
    shutil.rmtree(run_dir / "grpo" / "eval_after")  # it names the model by its path, which the copy moved
    (unlikely / "checkpoint-8").mkdir()
    (unlikely / "checkpoint-8" / "model.safetensors").write_bytes(b"cut short")
    rc, _, err = run_main(["--grpo.output_dir", str(run_dir), *SMALL])
    assert rc == 0, err
    a = load_file(reference / "grpo-unlikeliness" / "final" / "model.safetensors")
    b = load_file(unlikely / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    for name in ("solved_proofs.jsonl", "rank_bias.jsonl", "rank_bias_probe.json"):
        assert (unlikely / name).read_text() == (reference / "grpo-unlikeliness" / name).read_text(), name
