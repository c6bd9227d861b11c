"""The evaluator end to end on CPU: run directory, resume after a crash, checker failures, bad input, compare."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from prover.data.problem import Problem
from prover.eval import runner
from prover.eval.config import EvalConfig
from prover.eval.records import RESULTS_FILE, read_records
from prover.eval.runner import EvalError, evaluate, problem_seed
from prover.eval.summary import Summary
from prover.evaluate import main
from prover.sampling.base import Completion, Sampler, SamplingParams
from prover.tasks.base import Task, TaskConfig
from prover.verifier.base import Verifier
from prover.verifier.verdict import Status, Verdict

# Problem i is proved by a proof whose UTF-8 byte sum is divisible by MODULI[i]: every proof, about
# one in two, one in three, ..., practically none. An exact checker with a spread of difficulty.
MODULI = [1, 2, 3, 7, 40, 10**9]


class ExactTask(Task):
    name = "exact"
    stop = ["QED"]  # what the CLI samples with unless --stop says otherwise

    def __init__(self, config: TaskConfig | None = None):
        self.config = config or TaskConfig(name="exact")

    def load_problems(self, dataset=None):
        dataset = dataset or self.config.dataset
        if dataset not in (None, "all"):
            raise ValueError(f"unknown dataset {dataset!r}; the exact task has 'all'")
        problems = [
            Problem(f"p{i}", f"theorem p{i} : divisible {m} := by", extra={"modulus": m}) for i, m in enumerate(MODULI)
        ]
        return problems[: self.config.limit]

    def build_prompt(self, problem):
        return f"start {problem.name} goal"

    def extract_proof(self, completion, problem=None):
        return completion.strip() or None

    def make_verifier(self, config=None):
        return ExactVerifier()


class ExactVerifier(Verifier):
    """Checks the byte-sum rule; ``fail_after`` batches it raises (a crash), ``errors`` proofs get ERROR first."""

    def __init__(self, fail_after: int | None = None, errors: int = 0):
        self.fail_after, self.errors = fail_after, errors
        self.batches, self.checked = 0, []

    async def check(self, request):
        modulus = int(request.statement.split("divisible ")[1].split()[0])
        self.checked.append(request.proof)
        if self.errors > 0:
            self.errors -= 1
            return Verdict(Status.ERROR, reason="worker died", check="infra")
        ok = sum(request.proof.encode()) % modulus == 0
        return Verdict(Status.PROVED if ok else Status.REJECTED, check="exact", time=0.001)

    def check_batch(self, requests):
        self.batches += 1
        if self.fail_after is not None and self.batches > self.fail_after:
            raise RuntimeError("injected crash")
        return super().check_batch(requests)


class ListSampler(Sampler):
    """Fixed completions (repeated as needed), for the bookkeeping tests that need no model."""

    def __init__(self, texts):
        self.texts, self.calls = texts, []

    def generate(self, prompts, params):
        self.calls.append((list(prompts), params))
        return [
            [Completion(self.texts[i % len(self.texts)], [1, 2], -1.0, -0.5, "stop") for i in range(params.n)]
            for _ in prompts
        ]


@pytest.fixture(scope="module")
def hf_sampler(tiny_model_dir):
    from prover.sampling import make_sampler
    from prover.sampling.config import SamplerConfig

    with make_sampler(SamplerConfig(backend="hf", model=str(tiny_model_dir), device="cpu")) as sampler:
        yield sampler


PARAMS = SamplingParams(temperature=1.0, top_p=1.0, max_tokens=8)


def run_eval(run_dir, sampler, verifier=None, samples=8, **kwargs):
    task = ExactTask()
    kwargs.setdefault("chunk_size", 2)
    return evaluate(
        task,
        sampler,
        verifier or ExactVerifier(),
        task.load_problems(),
        samples=samples,
        run_dir=run_dir,
        sampling_params=PARAMS,
        seed=3,
        progress=False,
        bootstrap=200,
        **kwargs,
    )


def lines(run_dir):
    return [json.loads(x) for x in (Path(run_dir) / RESULTS_FILE).read_text().splitlines() if x.strip()]


def test_run_dir_holds_records_summary_and_run_info(tmp_path, hf_sampler):
    summary = run_eval(tmp_path / "run", hf_sampler, ks=[1, 2, 8])
    run_dir = tmp_path / "run"
    for name in ("samples.jsonl", "summary.json", "config.yaml", "run_info.json", "eval_settings.json"):
        assert (run_dir / name).is_file(), name
    records = lines(run_dir)
    assert len(records) == len(MODULI) * 8
    assert {(r["problem"], r["sample"]) for r in records} == {
        (f"p{i}", j) for i in range(len(MODULI)) for j in range(8)
    }
    for r in records:
        assert r["seed"] == problem_seed(3, r["problem"])
        assert r["tokens"] > 0 and r["logprob_sum"] <= 0 and r["finish_reason"] in ("stop", "length")
        expected = r["proof"] is not None and sum(r["proof"].encode()) % MODULI[int(r["problem"][1:])] == 0
        assert (r["status"] == "proved") == expected
    # the summary is the estimator applied to the records
    per = {
        f"p{i}": sum(r["status"] == "proved" for r in records if r["problem"] == f"p{i}") for i in range(len(MODULI))
    }
    assert summary.pass_at_k[1].mean == pytest.approx(sum(c / 8 for c in per.values()) / len(per))
    assert summary.pass_at_k[8].mean == pytest.approx(sum(c > 0 for c in per.values()) / len(per))
    assert summary.solved == sum(c > 0 for c in per.values())
    assert {name: r.correct for name, r in summary.per_problem.items()} == per
    assert summary.pass_at_k[1].mean <= summary.pass_at_k[2].mean <= summary.pass_at_k[8].mean
    assert summary.pass_at_k[8].low <= summary.pass_at_k[8].mean <= summary.pass_at_k[8].high
    assert 0 < summary.solved < len(MODULI)  # p0 always, p5 never
    assert Summary.load(run_dir).to_json() == summary.to_json()
    assert json.loads((run_dir / "run_info.json").read_text())["seeds"] == {"seed": 3}


def test_crash_then_resume_gives_the_uninterrupted_result(tmp_path, hf_sampler):
    whole = run_eval(tmp_path / "whole", hf_sampler)
    crashing = ExactVerifier(fail_after=1)  # the second chunk's check raises: problems 0-1 are written
    with pytest.raises(RuntimeError, match="injected crash"):
        run_eval(tmp_path / "resumed", hf_sampler, crashing)
    assert len(lines(tmp_path / "resumed")) == 2 * 8
    with open(tmp_path / "resumed" / RESULTS_FILE, "a") as f:
        f.write('{"problem": "p2", "sample": 0, "sta')  # the torn line a kill mid-write leaves
    before = (tmp_path / "resumed" / RESULTS_FILE).read_text()
    resumed = run_eval(tmp_path / "resumed", hf_sampler)
    after = (tmp_path / "resumed" / RESULTS_FILE).read_text()
    assert after.startswith(before)  # appended to, never rewritten
    assert resumed.results() == whole.results()
    assert resumed.skipped_lines == 1
    records = lines_without_torn(tmp_path / "resumed")
    keys = [(r["problem"], r["sample"]) for r in records]
    assert len(keys) == len(set(keys)) == len(MODULI) * 8  # no duplicates
    same = {(r["problem"], r["sample"]): r["completion"] for r in lines(tmp_path / "whole")}
    assert {(r["problem"], r["sample"]): r["completion"] for r in records} == same  # the same draws


def lines_without_torn(run_dir):
    out = []
    for x in (Path(run_dir) / RESULTS_FILE).read_text().splitlines():
        try:
            out.append(json.loads(x))
        except json.JSONDecodeError:
            continue
    return out


def test_a_finished_run_is_not_sampled_again(tmp_path):
    sampler = ListSampler(["a", "bb"])
    run_eval(tmp_path, sampler, samples=4)
    calls = len(sampler.calls)
    assert calls == len(MODULI)  # one generate call per problem, with its own seed
    assert len({params.seed for _, params in sampler.calls}) == len(MODULI)
    again = run_eval(tmp_path, sampler, samples=4, ks=[1, 4])
    assert len(sampler.calls) == calls and len(lines(tmp_path)) == len(MODULI) * 4
    assert again.ks == [1, 4]  # reporting settings may change on resume


def test_the_same_proof_is_checked_once_and_malformed_ones_not_at_all(tmp_path):
    verifier = ExactVerifier()
    summary = run_eval(tmp_path, ListSampler(["x", " x ", "  "]), verifier, samples=6, chunk_size=10)
    assert sorted(verifier.checked) == ["x"] * len(MODULI)  # " x " extracts to "x"; "  " has no proof
    records = lines(tmp_path)
    assert sum(r["proof"] is None for r in records) == 2 * len(MODULI)
    assert all(r["verdict"]["check"] == "extract" for r in records if r["proof"] is None)
    assert summary.statuses["no_proof"] == 2 * len(MODULI)
    assert summary.per_problem["p0"].distinct_correct == 1 and summary.per_problem["p0"].correct == 4


def test_checker_failures_are_retried_then_left_out_then_rechecked_on_resume(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "_backoff", lambda attempt: None)
    texts = [chr(ord("a") + i) for i in range(4)]
    # a transient failure: retried in the run, nothing left over
    flaky = ExactVerifier(errors=3)
    summary = run_eval(tmp_path / "flaky", ListSampler(texts), flaky, samples=4, error_retries=1)
    assert summary.errors == 0 and summary.statuses.get("error") is None
    # a persistent failure: recorded as ERROR and left out of n, never counted as wrong
    sampler = ListSampler(texts)
    broken = run_eval(
        tmp_path / "broken", sampler, ExactVerifier(errors=10**6), samples=4, error_retries=1, chunk_size=1, ks=[1, 4]
    )
    assert broken.errors == len(MODULI) * 4 and broken.solved == 0
    assert broken.pass_at_k[1].problems == 0 and set(broken.incomplete) == {f"p{i}" for i in range(len(MODULI))}
    # a resume with a working checker re-checks the recorded proofs without sampling them again
    calls = len(sampler.calls)
    healed = run_eval(tmp_path / "broken", sampler, ExactVerifier(), samples=4, chunk_size=1, ks=[1, 4])
    assert len(sampler.calls) == calls
    assert healed.errors == 0 and healed.incomplete == []
    assert healed.per_problem == summary.per_problem and healed.statuses == summary.statuses
    assert healed.pass_at_k[1].mean == pytest.approx(summary.pass_at_k[1].mean)
    records, _ = read_records(tmp_path / "broken" / RESULTS_FILE)
    assert all(r["status"] != "error" for r in records.values())
    assert len(lines(tmp_path / "broken")) == 2 * len(MODULI) * 4  # the ERROR lines stay, superseded


def test_resume_under_other_settings_is_refused(tmp_path):
    run_eval(tmp_path, ListSampler(["a"]), samples=2)
    with pytest.raises(EvalError, match="samples: 2 there, 4 now"):
        run_eval(tmp_path, ListSampler(["a"]), samples=4)


@pytest.fixture
def exact_registry(monkeypatch):
    """The CLI on the exact task, registered for the test."""
    from prover.tasks import base

    monkeypatch.setitem(base._REGISTRY, "exact", f"{__name__}:ExactTask")


def test_cli_run_then_compare(tmp_path, tiny_model_dir, exact_registry, capsys):
    args = [
        "--model",
        str(tiny_model_dir),
        "--task.name",
        "exact",
        "--samples",
        "4",
        "--k",
        "1,2,4",
        "--max_tokens",
        "8",
        "--bootstrap",
        "100",
        "--sampler.backend",
        "hf",
        "--sampler.device",
        "cpu",
    ]
    assert main([*args, "--run_dir", str(tmp_path / "a"), "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "pass@k" in out and "problems solved" in out
    assert (tmp_path / "a" / "passk.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a finished run, rerun on fewer problems: nothing sampled, the summary covers those problems
    assert main([*args, "--run_dir", str(tmp_path / "a"), "--seed", "1", "--task.limit", "3"]) == 0
    assert Summary.load(tmp_path / "a").problems == 3 and len(lines(tmp_path / "a")) == len(MODULI) * 4
    assert main([*args, "--run_dir", str(tmp_path / "a"), "--seed", "1"]) == 0
    assert main([*args, "--run_dir", str(tmp_path / "b"), "--seed", "2", "--temperature", "0.5"]) == 0
    capsys.readouterr()
    png = tmp_path / "cmp.png"
    assert main(["compare", str(tmp_path / "a"), str(tmp_path / "b"), "--labels", "hot,cool", "--out", str(png)]) == 0
    out = capsys.readouterr().out
    assert "hot" in out and "Δ cool" in out and "solved" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("extra,stop", [([], ["QED"]), (["--stop", "END,DONE"], ["END", "DONE"])])
def test_cli_samples_with_the_tasks_stop_strings(tmp_path, exact_registry, tiny_model_dir, monkeypatch, extra, stop):
    sampler = ListSampler(["a"])
    monkeypatch.setattr("prover.sampling.make_sampler", lambda config: sampler)
    argv = [
        "--model",
        str(tiny_model_dir),
        "--task.name",
        "exact",
        "--samples",
        "2",
        "--plot",
        "false",
        "--progress",
        "false",
        "--run_dir",
        str(tmp_path),
        *extra,
    ]
    assert main(argv) == 0
    assert all(params.stop == stop and params.n == 2 for _, params in sampler.calls)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--samples", "4", "--k", "1,8"], "k must lie in 1..samples=4"),
        (["--dataset", "nope"], "unknown dataset 'nope'"),
        (["--task.name", "nope"], "unknown task 'nope'"),
        (["--task.name", "lean", "--dataset", "minif2f-tset"], "did you mean minif2f-test? named sets: minif2f-test, "),
        (["--samplez", "4"], "unknown option --samplez (did you mean --samples or --sampler?)"),
        (["--model", "/nonexistent/model"], "error: model directory /nonexistent/model does not exist\n"),
        (["--model", "someone/no-such-model"], "'someone/no-such-model' is neither a local directory nor loadable"),
    ],
)
def test_bad_input_fails_before_sampling(tmp_path, tiny_model_dir, exact_registry, monkeypatch, capsys, extra, message):
    def no_sampler(config):
        raise AssertionError("the sampler must not be built for bad input")

    monkeypatch.setattr("prover.sampling.make_sampler", no_sampler)
    monkeypatch.setattr("datasets.load_dataset", lambda *a, **k: pytest.fail("went to the hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    argv = ["--model", str(tiny_model_dir), "--task.name", "exact", "--run_dir", str(tmp_path / "r"), *extra]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_training_run_directory_as_model_points_to_its_final_model(tmp_path, tiny_model_dir, capsys):
    """``--model runs/default-job`` said only "no config.json"; the trained model is in final/."""
    run = tmp_path / "default-job"
    shutil.copytree(tiny_model_dir, run / "checkpoint-200")
    assert main(["--model", str(run), "--task.name", "synthetic", "--dataset", "test"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"its latest checkpoint is --model {run / 'checkpoint-200'}")
    shutil.copytree(tiny_model_dir, run / "final")
    assert main(["--model", str(run), "--task.name", "synthetic", "--dataset", "test"]) == 2
    assert capsys.readouterr().err == (
        f"error: {run} has no config.json, so it is not a Hugging Face model; "
        f"it is a training run: its trained model is --model {run / 'final'}\n"
    )


def test_a_lean_project_that_is_not_set_up_fails_before_sampling(
    tmp_path, tiny_model_dir, shared_data_dir, monkeypatch, capsys
):
    monkeypatch.setattr("prover.sampling.make_sampler", lambda config: pytest.fail("sampler built"))
    argv = [
        "--model",
        str(tiny_model_dir),
        "--dataset",
        str(shared_data_dir / "minif2f_test.parquet"),
        "--verifier.lean_project",
        str(tmp_path / "no_lean"),
        "--run_dir",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: verifier:") and "no_lean" in err
    assert not (tmp_path / "r").exists()


def test_lean_task_with_the_lean_pool_on_the_repl_double(tmp_path, shared_data_dir):
    """The evaluator on the real Lean task and REPL pool (a REPL stand-in acts out Lean's verdicts)."""
    import sys

    from prover.tasks.lean import LeanTask
    from prover.verifier.config import VerifierConfig

    task = LeanTask(TaskConfig(name="lean", dataset=str(shared_data_dir / "minif2f_test.parquet"), limit=3))
    texts = [
        "  norm_num -- double:accept\n```",
        "  linarith -- double:error\n```",
        "  simp\n",
        "  sorry\n```",
        "  nlinarith -- double:exit\n```",
    ]  # the last one crashes the REPL every time
    double = [sys.executable, str(Path(__file__).with_name("repl_double.py"))]
    config = VerifierConfig(repl_command=double, workers=2, timeout=10, start_timeout=30)
    with task.make_verifier(config) as verifier:
        summary = evaluate(
            task,
            ListSampler(texts),
            verifier,
            task.load_problems(),
            samples=5,
            run_dir=tmp_path,
            progress=False,
            error_retries=0,
            bootstrap=100,
        )
    by_text = {}
    for r in lines(tmp_path):
        by_text.setdefault(r["completion"], set()).add((r["status"], r["verdict"]["check"]))
    assert by_text[texts[0]] == {("proved", "axioms")}
    assert by_text[texts[1]] == {("rejected", "lean")}
    assert by_text[texts[2]] == {("rejected", "extract")}  # no closing fence
    assert by_text[texts[3]] == {("rejected", "screen")}
    assert by_text[texts[4]] == {("error", "infra")}
    # the crashed checks are neither right nor wrong: n = 4 per problem, so pass@5 covers no problem
    assert summary.errors == 3 and len(summary.incomplete) == 3
    assert summary.pass_at_k[1].mean == pytest.approx(1 / 4) and summary.pass_at_k[4].mean == 1.0
    assert summary.pass_at_k[5].problems == 0


def test_compare_needs_finished_runs(tmp_path, capsys):
    assert main(["compare", str(tmp_path)]) == 2
    assert "summary.json does not exist" in capsys.readouterr().err


def test_progress_figures_follow_resumes_and_rechecks(caplog):
    from prover.eval.progress import EvalProgress

    problems = [Problem(n, "") for n in "abc"]
    bar = EvalProgress(len(problems), samples=2, log_every=0)
    with bar, caplog.at_level("INFO", logger="prover.eval.progress"):
        bar.seed_with(
            {
                ("a", 0): {"sample": 0, "status": "proved"},
                ("a", 1): {"sample": 1, "status": "rejected"},
                ("c", 0): {"sample": 0, "status": "proved"},
            },
            problems,
            samples=2,
        )
        assert bar._fields() == {"verified": 3, "n": 2, "pass1": "0.500", "passn": "1.000"}
        bar.add("b", [{"sample": 0, "status": "error"}, {"sample": 1, "status": "rejected"}])
        assert bar._fields() == {"verified": 5, "n": 2, "pass1": "0.250", "passn": "0.500"}
        bar.add("b", [{"sample": 0, "status": "proved"}])  # the re-check replaces the error
        assert bar._fields() == {"verified": 5, "n": 2, "pass1": "0.500", "passn": "1.000"}
    assert "2/3 problems, 5 samples verified, pass@1 0.500, pass@2 1.000" in caplog.text  # not a terminal: logged


def test_compare_restricts_runs_to_their_common_problems(tmp_path):
    from prover.eval.report import on_common_problems
    from prover.eval.summary import summarize

    full = run_eval(tmp_path / "full", ListSampler(["a", "bb", "ccc"]), samples=3)
    task = ExactTask(TaskConfig(name="exact", limit=3))
    part = evaluate(
        task,
        ListSampler(["a"]),
        ExactVerifier(),
        task.load_problems(),
        samples=3,
        run_dir=tmp_path / "part",
        progress=False,
        bootstrap=200,
    )
    shown, note = on_common_problems({"full": full, "part": part})
    assert "full: 6, part: 3" in note and shown["part"] is not part
    records, _ = read_records(tmp_path / "full" / RESULTS_FILE)
    expected = summarize(records, ["p0", "p1", "p2"], 3, full.ks, bootstrap=200)
    assert shown["full"].problems == 3 and shown["full"].solved == expected.solved
    assert {k: iv.mean for k, iv in shown["full"].pass_at_k.items()} == {
        k: iv.mean for k, iv in expected.pass_at_k.items()
    }
    assert shown["full"].statuses == {} and shown["full"].mean_tokens is None  # not recomputable: blanked
    assert on_common_problems({"full": full, "again": full})[1] is None


EVAL_RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes" / "eval").glob("*.yaml"))


@pytest.mark.parametrize("recipe", EVAL_RECIPES, ids=lambda p: p.name)
def test_eval_recipes_load_and_name_sets_that_exist(recipe, shared_data_dir):
    from prover.config import load_config
    from prover.data.loading import NAMED_SETS, resolve_source
    from prover.eval.config import DEFAULT_TASK, EvalConfig

    config = load_config(EvalConfig, ["--config", str(recipe)], defaults={"task": {"name": DEFAULT_TASK}})
    assert config.k[-1] == config.samples
    if config.task.name == "lean":
        assert config.dataset in NAMED_SETS and resolve_source(config.dataset, shared_data_dir).is_file()


def test_the_papers_validation_set_has_a_recipe_to_n_512():
    """The paper reports pass@N up to 512 on mff-lwb-unseen-200; its recipe samples as the release does."""
    from prover.config import load_config
    from prover.eval.config import EvalConfig

    recipe = Path(__file__).resolve().parents[1] / "recipes/eval/mff_lwb_unseen_200_deepseek_v15.yaml"
    config = load_config(EvalConfig, ["--config", str(recipe)])
    assert (config.dataset, config.samples, config.k[-1]) == ("mff-lwb-unseen-200", 512, 512)
    assert (config.temperature, config.top_p, config.max_tokens) == (1.0, 1.0, 1024)


def test_each_trained_model_gets_its_own_default_run_dir(tmp_path, tiny_model_dir, exact_registry, monkeypatch, capsys):
    """Two trained models, both called final/: the second used to be refused ("holds a run with other
    settings") because the default directory was named after the last path part only."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("prover.sampling.make_sampler", lambda config: ListSampler(["a"]))
    for run in ("grpo", "unlikely"):
        shutil.copytree(tiny_model_dir, tmp_path / "runs" / run / "final")
        argv = [
            "--model",
            f"runs/{run}/final",
            "--task.name",
            "exact",
            "--samples",
            "2",
            "--plot",
            "false",
            "--progress",
            "false",
            "--bootstrap",
            "10",
        ]
        assert main(argv) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs" / "eval").iterdir()) == [
        "runs--grpo--final_exact_n2_s0",
        "runs--unlikely--final_exact_n2_s0",
    ]
    hub = EvalConfig(model="deepseek-ai/DeepSeek-Prover-V1.5-RL", dataset="minif2f-test", samples=256)
    assert hub.resolved_run_dir() == Path("runs/eval/deepseek-ai--DeepSeek-Prover-V1.5-RL_minif2f-test_n256_s0")
