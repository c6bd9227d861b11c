"""python -m prover.search, non-interactive, on CPU with the tiny model and an exact verifier.

A tiny random model proves nothing real, so the test task's checker accepts any proof with a given
property (it contains a given string); a theorem whose conclusion is ``False`` has no proof at all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from prover.data.problem import Problem
from prover.sampling.base import Completion, Sampler
from prover.search.config import SearchConfig
from prover.search.engine import StatementError
from prover.search.resume import first_error_offset, position_to_offset, resume_prefix
from prover.search.session import SearchSession
from prover.tasks.base import Task, TaskConfig
from prover.verifier.base import Verifier
from prover.verifier.verdict import ProofRequest, Status, Verdict

HEADER = "import Mathlib\n\nopen Nat\n"


class PropertyVerifier(Verifier):
    """Exact checker: proved iff the proof contains ``must_contain``, and never for ``: False``."""

    def __init__(self, must_contain: str):
        self.must_contain = must_contain
        self.checked: list[str] = []

    async def check(self, request: ProofRequest) -> Verdict:
        self.checked.append(request.proof)
        if self.must_contain in request.proof and ": False :=" not in request.statement:
            return Verdict(Status.PROVED, check="exact")
        line = (request.header + request.statement).count("\n") + 1
        return Verdict(
            Status.REJECTED,
            reason=f"no {self.must_contain!r} in the proof",
            check="exact",
            messages=[
                {
                    "severity": "error",
                    "pos": {"line": line, "column": 0},
                    "data": f"missing {self.must_contain!r}\nmore",
                }
            ],
        )


class PropertyTask(Task):
    """Prompt = header + statement; the completion is the proof; ``options.must_contain`` decides."""

    name = "property"

    def __init__(self, config: TaskConfig | None = None):
        self.config = config or TaskConfig(name="property")
        self.must_contain = str(self.config.options.get("must_contain", "a"))
        self.verifier: PropertyVerifier | None = None

    def load_problems(self, dataset=None):
        return [
            Problem("easy_one", "theorem easy_one : True := by\n", HEADER),
            Problem("false_one", "theorem false_one : False := by\n", HEADER),
        ]

    def build_prompt(self, problem):
        return problem.header + problem.statement

    def extract_proof(self, completion, problem=None):
        return completion.rstrip() or None

    def make_verifier(self, config=None):
        self.verifier = PropertyVerifier(self.must_contain)
        return self.verifier

    def parse_statement(self, text, name="user_theorem"):
        """As the Lean task: what comes before `theorem` is the header."""
        head, _, rest = text.partition("theorem")
        if not rest:
            raise ValueError("a statement must declare a theorem")
        if ":= by" not in rest:
            raise ValueError("a statement must end with `:= by`")
        return Problem(name, "theorem" + rest.rstrip() + "\n", head.strip() + "\n" if head.strip() else HEADER)


class ScriptedSampler(Sampler):
    """Returns the given completion texts in turn and records every prompt it was asked to continue."""

    def __init__(self, texts: list[str]):
        self.texts = texts
        self.prompts: list[list[str]] = []
        self.i = 0

    def generate(self, prompts, params):
        self.prompts.append(list(prompts))
        out = []
        for _ in prompts:
            row = []
            for _ in range(params.n):
                text = self.texts[self.i % len(self.texts)]
                self.i += 1
                row.append(Completion(text, [1], -1.0, -1.0, "stop"))
            out.append(row)
        return out


@pytest.fixture
def property_task(monkeypatch):
    """Makes ``--task property`` name the test task, as a plugin task would be registered."""
    from prover.tasks import base

    monkeypatch.setitem(base._REGISTRY, "property", f"{__name__}:PropertyTask")


def cli_args(model, *extra):
    return [
        "--task",
        "property",
        "--model",
        str(model),
        "--sampler.backend",
        "hf",
        "--sampler.device",
        "cpu",
        "--max_tokens",
        "16",
        "--round_size",
        "8",
        *extra,
    ]


def test_cli_prints_a_proof_the_verifier_accepts(property_task, tiny_model_dir, capsys):
    from prover.search.cli import main

    rc = main(
        cli_args(
            tiny_model_dir, "--theorem", "theorem t (x : ℕ) (h : 2 * x = 4) : x = 2 := by", "--budget", "64", "--json"
        )
    )
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["outcome"] == "proved"
    assert "a" in out["proof"] and out["verdict"]["status"] == "proved"
    assert out["statement"] == "theorem t (x : ℕ) (h : 2 * x = 4) : x = 2 := by\n"
    assert 1 <= out["samples"] <= 64 and out["statuses"]["proved"] >= 1


def test_cli_text_output_is_statement_and_proof(property_task, tiny_model_dir, capsys):
    from prover.search.cli import main

    rc = main(cli_args(tiny_model_dir, "--theorem", "theorem t : True := by", "--task.options", "{must_contain: e}"))
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("theorem t : True := by\n") and "e" in out.split(":= by\n", 1)[1]


def test_cli_exits_1_with_a_summary_when_the_budget_runs_out(property_task, tiny_model_dir, capsys):
    from prover.search.cli import main

    rc = main(cli_args(tiny_model_dir, "--dataset", "any", "--name", "false_one", "--budget", "12"))
    captured = capsys.readouterr()
    assert rc == 1 and captured.out == ""
    assert "not proved: budget spent" in captured.err and "12/12 samples used" in captured.err
    assert "missing 'a'" in captured.err  # the most common error, first line of Lean's message only
    assert "more" not in captured.err


def test_json_failure_reports_counts(property_task, tiny_model_dir, capsys):
    from prover.search.cli import main

    rc = main(cli_args(tiny_model_dir, "--theorem", "theorem f : False := by", "--budget", "8", "--json"))
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and out["outcome"] == "exhausted" and out["proof"] is None
    assert out["samples"] == 8 and out["verified"] == out["distinct_proofs"] == out["statuses"]["rejected"]
    assert out["top_errors"][0][0] == "missing 'a'"


def test_synthetic_task(tiny_model_dir, capsys):
    """The real synthetic task end to end: its statements, extraction and exact checker (the tiny random
    model proves nothing there: every completion lacks the closing `qed`)."""
    from prover.search.cli import main

    args = [
        "--task",
        "synthetic",
        "--model",
        str(tiny_model_dir),
        "--sampler.backend",
        "hf",
        "--sampler.device",
        "cpu",
        "--max_tokens",
        "8",
        "--budget",
        "8",
        "--round_size",
        "4",
        "--json",
    ]
    assert main([*args, "--theorem", "start 3 goal 12 steps 4"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["outcome"] == "exhausted" and out["samples"] == 8 and out["malformed"] + out["verified"] == 8
    assert main([*args, "--theorem", "theorem t : 1 = 1 := by"]) == 2
    assert "not a synthetic theorem" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--theorem", "theorem t : True"], "must end with `:= by`"),  # no `:= by`
        (["--theorem", "  "], "empty"),
        (["--name", "esay_one"], "did you mean easy_one"),  # a typo in a dataset name
        (["--file", "/nonexistent/stmt.lean"], "does not exist"),
        (
            ["--theorem", "theorem t : True := by", "--model", "/nonexistent/model"],
            "bad input: model directory /nonexistent/model does not exist",
        ),
    ],
)
def test_bad_input_is_reported_before_any_sampling(property_task, tiny_model_dir, capsys, monkeypatch, extra, message):
    import prover.sampling
    from prover.search.cli import main

    monkeypatch.setattr(
        prover.sampling, "make_sampler", lambda config: pytest.fail("the model was loaded for bad input")
    )
    rc = main(cli_args(tiny_model_dir, *extra))
    err = capsys.readouterr().err
    assert rc == 2 and message in " ".join(err.split())


def test_a_bad_model_path_is_one_line_before_loading():
    """It used to end in three chained tracebacks from the model load."""
    argv = [
        sys.executable,
        "-m",
        "prover.search",
        "--task",
        "synthetic",
        "--model",
        "/nonexistent/model",
        "--theorem",
        "start 5 goal 40 steps 6",
    ]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert out.returncode == 2
    assert out.stderr == "bad input: model directory /nonexistent/model does not exist\n" and out.stdout == ""


def test_bad_settings_name_the_field(property_task, tiny_model_dir, capsys):
    from prover.search.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(cli_args(tiny_model_dir, "--theorem", "theorem t : True := by", "--strategy", "dfs"))
    assert exit_.value.code == 2 and "config.strategy" in capsys.readouterr().err


def test_file_statement(property_task, tiny_model_dir, tmp_path, capsys):
    from prover.search.cli import main

    stmt = tmp_path / "two.lean"
    stmt.write_text("theorem two : 1 + 1 = 2 := by\n")
    assert main(cli_args(tiny_model_dir, "--file", str(stmt), "--json")) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["name"] == "two" and out["statement"] == "theorem two : 1 + 1 = 2 := by\n"


# --- the session as a library --------------------------------------------------------------------


def session_with(texts, **config):
    task = PropertyTask()
    return SearchSession(SearchConfig(**config), task=task, sampler=ScriptedSampler(texts)), task


def test_each_distinct_proof_is_verified_once_and_budget_is_exact():
    session, task = session_with(["x", "y", "x ", "z", "y"], budget=10, round_size=4)
    result = session.search(session.problem_from_text("theorem f : False := by"))
    assert result.outcome == "exhausted" and result.progress.samples == 10
    assert sorted(task.verifier.checked) == ["x", "y", "z"]  # "x " is "x": trailing space does not count
    assert result.progress.distinct == result.progress.verified == 3


class FlakyVerifier(PropertyVerifier):
    """ERROR (the checker failed) for the proofs listed, on their first check only; else as PropertyVerifier."""

    def __init__(self, fail_once=(), fail_always=False):
        super().__init__("a")
        self.fail_once, self.fail_always = set(fail_once), fail_always

    async def check(self, request):
        if self.fail_always or request.proof in self.fail_once:
            self.fail_once.discard(request.proof)
            self.checked.append(request.proof)
            return Verdict(Status.ERROR, reason="worker died", check="infra")
        return await super().check(request)


def test_a_failed_check_is_retried_and_not_counted_as_a_wrong_proof():
    session, task = session_with(["x", "y", "x", "z", "x", "y"], budget=6, round_size=2)
    task.make_verifier = lambda config=None: FlakyVerifier(fail_once=["x"])
    result = session.search(session.problem_from_text("theorem f : False := by"))
    assert session.verifier.checked == ["x", "y", "x", "z"]  # x again after its check failed, then never
    assert result.progress.statuses == {"error": 1, "rejected": 3} and result.progress.distinct == 3


def test_a_broken_verifier_stops_the_search(property_task, tiny_model_dir, capsys, monkeypatch):
    from prover.search.cli import main

    monkeypatch.setattr(PropertyTask, "make_verifier", lambda self, config=None: FlakyVerifier(fail_always=True))
    rc = main(cli_args(tiny_model_dir, "--theorem", "theorem f : False := by", "--budget", "64"))
    err = " ".join(capsys.readouterr().err.split())
    assert rc == 1 and "search failed: the verifier failed on all" in err and "worker died" in err


def test_cancel_and_time_limit_stop_the_search():
    session, _ = session_with(["x"], budget=10**6, round_size=2)
    problem = session.problem_from_text("theorem f : False := by")
    cancel = threading.Event()
    cancel.set()
    assert session.search(problem, cancel=cancel).outcome == "cancelled"
    session.config.time_limit = 0.2
    result = session.search(problem)
    assert result.outcome == "timeout" and 0 < result.progress.samples < 10**6 and result.progress.elapsed >= 0.2


def test_run_dir_resumes_without_checking_proofs_again(tmp_path):
    session, task = session_with([f"p{i}" for i in range(8)], budget=8, round_size=4, run_dir=str(tmp_path))
    problem = session.problem_from_text("theorem f : False := by")
    assert session.search(problem).outcome == "exhausted" and task.verifier.checked == [f"p{i}" for i in range(8)]
    # Rerun after a crash with more budget: a fresh verifier, and samples that repeat p4-p7 first.
    again, task2 = session_with([f"p{i}" for i in range(4, 12)], budget=16, round_size=4, run_dir=str(tmp_path))
    result = again.search(problem)
    assert result.progress.samples == 16  # the first run's 8 samples count against the budget
    assert task2.verifier.checked == [f"p{i}" for i in range(8, 12)]  # p4-p7 were not checked again
    assert result.progress.verified == result.progress.distinct == 12
    assert len((next(tmp_path.iterdir()) / "attempts.jsonl").read_text().splitlines()) == 12


def test_a_proof_in_the_run_dir_is_reported_without_sampling(tmp_path):
    session, _ = session_with(["banana"], budget=4, run_dir=str(tmp_path))
    problem = session.problem_from_text("theorem t : True := by")
    assert session.search(problem).proof == "banana"
    session2, _ = session_with(["zzz"], budget=4, run_dir=str(tmp_path))
    again = session2.search(problem)
    assert again.proved and again.proof == "banana" and session2.sampler.prompts == []


def test_header_option_replaces_the_problem_header(tmp_path):
    header = tmp_path / "h.lean"
    header.write_text("import Mathlib\nopen Real\n")
    session, _ = session_with(["a"], header=str(header))
    assert session.problem_from_text("theorem t : True := by").header == "import Mathlib\nopen Real\n"


# --- truncate-and-resume ----------------------------------------------------------------------------

STATEMENT = "theorem t (x : ℕ) (h₀ : 2 * x = 4) : x = 2 := by\n"  # line 4 of the checked text
PROOF = "  have h₂ : x = 2 := by omega\n  nlinarith [h₂, foo]\n  simp\n"  # lines 5-7


def lean_error(line, column, data="unknown identifier 'foo'"):
    return {"severity": "error", "pos": {"line": line, "column": column}, "endPos": None, "data": data}


@pytest.mark.parametrize(
    "messages, prefix",
    [
        # `foo` on line 6: column 17 counts code points (h₂ is 4 bytes of UTF-8 wide, 2 characters)
        ([lean_error(6, 17)], "  have h₂ : x = 2 := by omega\n  nlinarith [h₂, "),
        # the earliest error wins, whatever the order of the messages
        ([lean_error(7, 2, "simp made no progress"), lean_error(5, 24, "omega failed")], "  have h₂ : x = 2 := by "),
        # `unsolved goals` sits on the statement's `by`: every tactic ran, the whole proof is kept
        ([lean_error(4, 46, "unsolved goals\nx : ℕ")], PROOF),
        # warnings do not cut
        (
            [{"severity": "warning", "pos": {"line": 5, "column": 2}, "data": "unused"}, lean_error(7, 2)],
            PROOF[: PROOF.index("simp")],
        ),
        # no located error (a timeout, a screen rejection): nothing to resume from
        ([], None),
    ],
)
def test_resume_prefix_is_the_text_before_the_first_error(messages, prefix):
    verdict = Verdict(Status.REJECTED, messages=messages)
    assert resume_prefix(PROOF, verdict, HEADER, STATEMENT) == prefix


def test_positions_count_lines_from_the_header():
    text = HEADER + STATEMENT + PROOF
    assert text[position_to_offset(text, 6, 17) :].startswith("foo]")
    assert first_error_offset(PROOF, [lean_error(6, 17)], HEADER.rstrip("\n"), STATEMENT) == PROOF.index(
        "foo"
    )  # header without its newline
    # a statement and a proof with no whitespace between them are checked on separate lines
    assert first_error_offset("simp", [lean_error(5, 0)], HEADER, STATEMENT.rstrip()) == 0
    with pytest.raises(ValueError, match="line 99"):
        position_to_offset(text, 99, 0)


class LeanLikeVerifier(Verifier):
    """Rejects with an error located at ``foo`` in the checked text header + statement + proof."""

    async def check(self, request):
        text = request.header + request.statement + request.proof
        if "foo" not in request.proof:
            return Verdict(Status.REJECTED, messages=[lean_error(4, 46, "unsolved goals")])
        before = text[: text.index("foo")].split("\n")
        return Verdict(Status.REJECTED, messages=[lean_error(len(before), len(before[-1]))])


def test_resume_prompts_continue_exactly_the_prefix_before_the_first_error():
    # Round 2 only repeats what is known: "foo" cuts to the empty prefix, prefix + "foo" to the prefix itself.
    sampler = ScriptedSampler([PROOF, "  nlinarith [foo]\n", "foo\n", "foo\n", "foo\n", "foo\n"])
    task = PropertyTask()
    task.make_verifier = lambda config=None: LeanLikeVerifier()
    config = SearchConfig(strategy="resume", budget=6, round_size=2)
    config.resume.width = 2
    session = SearchSession(config, task=task, sampler=sampler)
    problem = Problem("t", STATEMENT, HEADER)
    session.search(problem)
    base = HEADER + STATEMENT
    assert sampler.prompts[0] == [base]
    # Round 1 drew PROOF (cut before `foo`) and "  nlinarith [foo]" (cut to "  nlinarith ["); the longer prefix goes first.
    assert sampler.prompts[1] == [base, base + "  have h₂ : x = 2 := by omega\n  nlinarith [h₂, "]
    assert sampler.prompts[2] == [base, base + "  nlinarith ["]


# --- the Lean task and the real verifier pool, over the REPL double -----------------------------------


def test_lean_task_and_pool_end_to_end(tmp_path):
    """LeanTask prompts and extraction, the statement check through a REPL started as the pool's
    workers are, and proofs judged by the LeanPool (its screen, then the double as Lean)."""
    config = SearchConfig(budget=4, round_size=2)
    config.verifier.repl_command = [sys.executable, str(Path(__file__).with_name("repl_double.py"))]
    config.verifier.workers = 1
    config.verifier.timeout = 10
    sampler = ScriptedSampler(["  sorry\n```", "  nlinarith [h]\n```\nrest", "  omega\n```"])
    with SearchSession(config, sampler=sampler) as session:
        with pytest.raises(StatementError, match="unknown identifier"):
            session.check_statement(
                session.problem_from_text("theorem t /- double:error=unknown_identifier -/ : 1 = 1 := by")
            )
        problem = session.problem_from_text("theorem t (x : ℕ) (h : 2 * x = 4) : x = 2 := by")
        session.check_statement(problem)
        result = session.search(problem)
    assert sampler.prompts[0][0].startswith("Complete the following Lean 4 code:\n\n```lean4\nimport Mathlib")
    assert sampler.prompts[0][0].endswith("theorem t (x : ℕ) (h : 2 * x = 4) : x = 2 := by\n")
    # `sorry` is stopped by the pool's screen; the next proof (cut at its closing fence) is accepted
    assert result.proved and result.proof == "  nlinarith [h]" and result.verdict.check != "screen"
    assert result.progress.statuses == {"rejected": 1, "proved": 1}
    assert any("sorry" in kind for kind in result.progress.errors)


def test_the_docs_synthetic_examples_name_real_problems():
    """docs/search.md's example named syn_16_44_6, which is in no synthetic set."""
    import re

    from prover.tasks.synthetic import SyntheticTask

    docs = (Path(__file__).resolve().parents[1] / "docs" / "search.md").read_text()
    names = re.findall(r"--dataset test --name (syn_\w+)", docs)
    assert names
    test_set = {p.name for p in SyntheticTask(TaskConfig(name="synthetic")).load_problems("test")}
    assert set(names) <= test_set
