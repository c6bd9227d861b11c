"""Tactic-level best-first search over a small proof-state graph served by a double of each backend:
the REPL's tactic mode (a subprocess speaking its JSON protocol) and lean-dojo 4.20.0's ``Dojo``
(tests/dojo_double.py: the package's real result classes and exceptions, raised where its
``run_tac`` raises them). The LeanDojo tests skip, saying why, where lean-dojo cannot be imported.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from prover.data.problem import Problem
from prover.sampling.base import Completion, Sampler
from prover.search.backends import DojoBackend, ReplBackend, TacticOutcome, open_leandojo
from prover.search.best_first import join_tactics
from prover.search.config import SearchConfig
from prover.search.engine import SearchError, StatementError
from prover.search.session import SearchSession
from prover.tasks.base import Task
from prover.verifier.base import Verifier
from prover.verifier.config import VerifierConfig
from prover.verifier.errors import LeanSetupError
from prover.verifier.verdict import Status, Verdict

HEADER = "import Mathlib\n"
STATEMENT = "theorem t (x : ℕ) (h : 2 * x = 4) : x = 2 := by\n"

# state -> {tactic: next}; next is a state, "done", "sorry" (closes the goal with sorry),
# "error: message" (Lean rejects the tactic) or "hang" (the tactic never returns).
GRAPH = {
    "s0": {"intro y": "s1", "simp at h": "s2", "sorry": "sorry", "exact?": "error: exact? could not close the goal"},
    "s1": {"omega": "done", "ring_nf": "s3"},
    "s2": {"norm_num at h": "s4"},
    "s3": {"linarith": "done"},
    "s4": {"nlinarith [h]": "s5"},
    "s5": {"exact h": "done"},
}


def goals_of(state: str) -> str:
    return f"x : ℕ\nh : 2 * x = 4\n⊢ x = 2 -- {state}"


TESTS = Path(__file__).resolve().parent
# tests/repl_double.py (the REPL double of the verifier's tests) in tactic mode over a state graph,
# with every request logged to argv[1] and a tactic named `slow` that never returns.
REPL_WRAPPER = f"""
import json, sys, time
sys.path.insert(0, {str(TESTS)!r})
import repl_double
log = sys.argv.pop(1)
handle = repl_double.Double.handle

def logged(self, req):
    with open(log, "a") as f:
        f.write(json.dumps(req, ensure_ascii=False) + "\\n")
    if req.get("tactic") == "slow":
        time.sleep(3600)
    return handle(self, req)

repl_double.Double.handle = logged
with open(log, "a") as f:
    f.write("start\\n")
repl_double.main()
"""


def double_graph(graph: dict) -> dict:
    """Our graph in the double's format: theorem t starts at s0; an error edge keeps the state."""
    names = set(graph) | {t for edges in graph.values() for t in edges.values() if not t.startswith("error: ")}
    states = {name: {"goals": [goals_of(name)], "tactics": {}} for name in names - {"done"}}
    states["done"] = {"goals": []}
    for name, edges in graph.items():
        states[name]["tactics"] = {tac: {"error": t[7:]} if t.startswith("error: ") else t for tac, t in edges.items()}
    return {"theorems": {"t": "s0"}, "states": states}


def repl_command(tmp_path, graph) -> tuple[list[str], Path]:
    """The command that starts the double over ``graph``, and its request log."""
    wrapper, graph_file, log = tmp_path / "repl.py", tmp_path / "graph.json", tmp_path / "repl.log"
    wrapper.write_text(REPL_WRAPPER)
    graph_file.write_text(json.dumps(double_graph(graph)))
    return [sys.executable, str(wrapper), str(log), "--graph", str(graph_file)], log


def tactics_sent(log: Path) -> list[str]:
    return [json.loads(line)["tactic"] for line in log.read_text().splitlines() if line.startswith('{"tactic"')]


# --- LeanDojo: its real classes, through tests/dojo_double.py -------------------------------------


def lean_dojo_or_skip():
    """Skip, saying why, where lean-dojo cannot be imported (not installed, or Python >= 3.13, which
    4.20.0 does not support; importing it also asserts git >= 2.25)."""
    try:
        import lean_dojo  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"lean-dojo is not installed ({exc}): pip install -e .[dojo]")
    except Exception as exc:
        pytest.skip(f"lean-dojo does not import here: {type(exc).__name__}: {exc}")


# --- the model, the task and the whole-proof check -------------------------------------------------


class Policy(Sampler):
    """A model that proposes, for the tactics so far, fixed next tactics with fixed log-probs."""

    def __init__(self, table):
        self.table = table  # callable or dict: tuple of tactics so far -> [(tactic, logprob)]
        self.calls = 0

    def generate(self, prompts, params):
        assert params.stop == ["\n"]  # one tactic per line
        self.calls += 1
        out = []
        for prompt in prompts:
            done = tuple(line.strip() for line in prompt.split(":= by\n", 1)[1].splitlines())
            options = self.table(done) if callable(self.table) else self.table.get(done, [])
            options = options or [("```", -0.1)]  # nothing to say: the model closes the proof
            out.append(
                [
                    Completion(f"  {t}\n", [1, 2], lp, lp / 2, "stop")
                    for t, lp in (options[i % len(options)] for i in range(params.n))
                ]
            )
        return out


class GraphVerifier(Verifier):
    """Accepts a whole proof that leads to `done` through the graph, except the ones listed as rejected
    (say, a kernel check that the tactic mode did not run)."""

    def __init__(self, graph, rejected=()):
        self.graph = graph
        self.rejected = set(rejected)
        self.checked: list[tuple[str, ...]] = []

    async def check(self, request):
        tactics = tuple(line.strip() for line in request.proof.splitlines() if line.strip())
        self.checked.append(tactics)
        state = "s0"
        for t in tactics:
            state = self.graph.get(state, {}).get(t, "error")
        if state == "done" and tactics not in self.rejected:
            return Verdict(Status.PROVED, check="lean")
        return Verdict(Status.REJECTED, reason="kernel: declaration has metavariables", check="lean")


class GraphTask(Task):
    name = "graph"

    def __init__(self, verifier):
        self.verifier = verifier

    def load_problems(self, dataset=None):
        return [Problem("t", STATEMENT, HEADER)]

    def build_prompt(self, problem):
        return problem.header + problem.statement

    def extract_proof(self, completion, problem=None):
        return completion

    def make_verifier(self, config=None):
        return self.verifier


@dataclass
class Setup:
    session: SearchSession
    policy: Policy
    verifier: GraphVerifier
    log: object = None  # the REPL double's request log
    dojo: object = None  # the dojo_double.GraphDojoOpener, with every Dojo it opened


@pytest.fixture(params=["repl", "dojo"])
def make_search(request, tmp_path):
    """Builds a best-first session over a graph with the backend under test; closes it afterwards."""
    sessions = []

    def build(graph=GRAPH, table=None, rejected=(), budget=16, **best_first) -> Setup:
        verifier = GraphVerifier(graph, rejected)
        config = SearchConfig(strategy="best-first", budget=budget, time_limit=60)
        for key, value in {"tactics_per_expansion": 4, **best_first}.items():
            setattr(config.best_first, key, value)
        setup = Setup(None, Policy(table), verifier)
        backend = None
        if request.param == "repl":
            config.verifier.repl_command, setup.log = repl_command(tmp_path, graph)
            config.verifier.sandbox = "none"  # the log file lies outside the worker's scratch directory
        else:
            lean_dojo_or_skip()
            from dojo_double import GraphDojoOpener

            setup.dojo = GraphDojoOpener(graph)
            backend = DojoBackend(setup.dojo)
        setup.session = SearchSession(config, task=GraphTask(verifier), sampler=setup.policy, backend=backend)
        sessions.append(setup.session)
        return setup

    build.backend = request.param
    yield build
    for session in sessions:
        session.close()


PROBLEM = Problem("t", STATEMENT, HEADER)
SHORT = ("intro y", "omega")
LONG = ("simp at h", "norm_num at h", "nlinarith [h]", "exact h")


@pytest.mark.parametrize(
    "table, expected",
    [
        # the model prefers the two-tactic proof: it is found after two expansions
        ({(): [("intro y", -0.1), ("simp at h", -2.0)], ("intro y",): [("omega", -0.1), ("ring_nf", -1.0)]}, SHORT),
        # the model prefers the long route, and cumulative log-prob keeps it ahead of `intro y` (-3.0)
        (
            {
                (): [("simp at h", -0.1), ("intro y", -3.0)],
                ("simp at h",): [("norm_num at h", -0.1)],
                ("simp at h", "norm_num at h"): [("nlinarith [h]", -0.1)],
                LONG[:3]: [("exact h", -0.1)],
                ("intro y",): [("omega", -0.1)],
            },
            LONG,
        ),
    ],
)
def test_finds_the_proof_the_model_prefers(make_search, table, expected):
    setup = make_search(table=table)
    result = setup.session.search(PROBLEM)
    assert result.proved and result.proof == join_tactics(STATEMENT, expected)
    assert result.progress.expansions == len(expected)
    assert setup.verifier.checked == [expected]  # checked as a whole before it was reported


def test_respects_the_expansion_budget(make_search):
    chain = {f"s{k}": {"step": f"s{k + 1}", "stall": "error: no progress"} for k in range(100)}
    setup = make_search(graph=chain, table=lambda done: [("step", -0.1), ("stall", -0.5)], budget=5)
    result = setup.session.search(PROBLEM)
    assert result.outcome == "exhausted" and result.progress.expansions == 5 and setup.policy.calls == 5
    assert result.progress.tactics == 10  # two distinct tactics per expansion, no more
    assert result.progress.errors["tactic: no progress"] == 5


def test_never_reports_a_proof_the_final_check_rejects(make_search):
    graph = {"s0": {"cheat": "done", "intro y": "s1"}, "s1": {"omega": "done"}}
    table = {(): [("cheat", -0.1), ("intro y", -1.0)], ("intro y",): [("omega", -0.1)]}
    setup = make_search(graph=graph, table=table, rejected=[("cheat",)])
    result = setup.session.search(PROBLEM)
    assert setup.verifier.checked == [("cheat",), ("intro y", "omega")]
    assert result.proved and result.proof == join_tactics(STATEMENT, ("intro y", "omega"))

    setup = make_search(graph=graph, table=table, rejected=[("cheat",), ("intro y", "omega")])
    result = setup.session.search(PROBLEM)
    assert not result.proved and result.proof is None and result.outcome == "exhausted"
    assert result.note == "no proof state left to expand"


def test_forbidden_and_failing_tactics_are_not_proofs(make_search):
    table = {(): [("sorry", -0.01), ("exact?", -0.02), ("intro y", -0.5)], ("intro y",): [("omega", -0.1)]}
    setup = make_search(table=table)
    result = setup.session.search(PROBLEM)
    assert result.proof == join_tactics(STATEMENT, SHORT)
    assert (
        result.progress.errors["tactic: forbidden"] >= 1
        and result.progress.errors["tactic: exact? could not close the goal"] == 1
    )
    sent = tactics_sent(setup.log) if setup.log else setup.dojo.opened[0].calls
    assert "exact?" in sent and "sorry" not in sent  # screened before it reached Lean


def test_a_state_reached_twice_is_expanded_once(make_search):
    graph = {"s0": {"a": "s1", "b": "s1"}, "s1": {"c": "s2"}}
    setup = make_search(
        graph=graph, table=lambda done: [("a", -0.1), ("b", -0.2), ("c", -0.1)] if not done else [("c", -0.1)]
    )
    result = setup.session.search(PROBLEM)
    assert result.outcome == "exhausted" and result.progress.expansions == 3  # s0, s1 (once), s2


def test_statement_rejected_by_lean_before_any_sampling(tmp_path):
    config = SearchConfig()
    config.verifier.repl_command, log = repl_command(tmp_path, GRAPH)
    config.verifier.sandbox = "none"
    policy = Policy({})
    with SearchSession(config, task=GraphTask(GraphVerifier(GRAPH)), sampler=policy) as session:
        # the double reports an error for a command carrying this directive, as Lean would for `bad`
        with pytest.raises(StatementError, match="unknown identifier 'bad'"):
            session.check_statement(
                Problem("t", "theorem t /- double:error=unknown_identifier_'bad' -/ : bad = 1 := by\n", HEADER)
            )
        session.check_statement(PROBLEM)  # a good statement passes
    assert policy.calls == 0
    assert "  sorry" in log.read_text()  # checked with `sorry` as its proof


def test_repl_restarts_after_a_hung_tactic_and_replays_the_state(tmp_path):
    graph = {"s0": {"intro y": "s1"}, "s1": {"slow": "s2", "omega": "done"}}
    config = SearchConfig(strategy="best-first")
    config.verifier.repl_command, log = repl_command(tmp_path, graph)
    config.verifier.sandbox = "none"
    config.best_first.tactics_per_expansion = 2
    config.best_first.tactic_timeout = 1.0
    table = {(): [("intro y", -0.1)], ("intro y",): [("slow", -0.01), ("omega", -0.2)]}
    with SearchSession(config, task=GraphTask(GraphVerifier(graph)), sampler=Policy(table)) as session:
        result = session.search(PROBLEM)
    assert result.proved and result.proof == join_tactics(STATEMENT, ("intro y", "omega"))
    assert result.progress.errors["tactic: timeout"] == 1
    lines = log.read_text().splitlines()
    assert lines.count("start") == 2  # the hung REPL was killed and a new one started
    # the new process rebuilt `intro y` from the statement before running `omega` on it
    assert tactics_sent(log) == ["intro y", "slow", "intro y", "omega"]


def test_repl_is_replaced_between_theorems_after_many_requests(tmp_path):
    command, log = repl_command(tmp_path, GRAPH)
    backend = ReplBackend.from_config(VerifierConfig(repl_command=command, sandbox="none", max_checks_per_worker=3))
    root = backend.start(PROBLEM)  # the header, then the statement with `sorry`: 2 requests
    assert backend.run_tactic(root, "intro y").kind == "state"  # 3
    assert backend.start(PROBLEM) is root  # the same theorem keeps its process and states
    other = backend.start(Problem("t", STATEMENT.replace(":= by", " := by"), HEADER))
    assert backend.run_tactic(other, "intro y").kind == "state"
    backend.close()
    assert log.read_text().splitlines().count("start") == 2  # a fresh REPL for the next theorem


def dojo_backend(graph, fail=None):
    """A ``DojoBackend`` over ``graph`` served by tests/dojo_double.py, and the opener that counts its Dojos."""
    lean_dojo_or_skip()
    from dojo_double import GraphDojoOpener

    opener = GraphDojoOpener(graph, fail)
    return DojoBackend(opener), opener


def test_dojo_answers_become_outcomes():
    graph = {
        "s0": {"n": "s1", "g": "sorry", "e": "error: boom\n", "m": "error: proof contains metavariables"},
        "s1": {"f": "done"},
    }
    backend, opener = dojo_backend(graph)
    root = backend.start(PROBLEM)
    assert root.goals == goals_of("s0")
    child = backend.run_tactic(root, "n")  # TacticState
    assert child.kind == "state" and child.state.goals == goals_of("s1")
    assert backend.run_tactic(root, "g") == TacticOutcome("given_up")  # ProofGivenUp: the proof used sorry
    assert backend.run_tactic(root, "e") == TacticOutcome("error", error="boom")  # LeanError
    assert backend.run_tactic(root, "m") == TacticOutcome("error", error="proof contains metavariables")
    assert backend.run_tactic(root, "nope") == TacticOutcome("error", error="<stdin>:1:0: unknown tactic")
    assert backend.run_tactic(child.state, "f") == TacticOutcome("finished")  # ProofFinished
    assert backend.start(PROBLEM) is root and len(opener.opened) == 1  # the theorem stays open between calls
    backend.close()
    backend.close()  # safe twice
    assert opener.closed == 1


def test_dojo_timeout_fails_the_tactic_and_the_next_answer_is_the_next_tactics():
    # Lean goes on running a timed-out tactic and prints its answer later: a Dojo kept after a timeout
    # would hand `intro y` the slow tactic's state s9.
    backend, opener = dojo_backend({"s0": {"slow": "slow: s9", "intro y": "s1"}, "s1": {"omega": "done"}})
    root = backend.start(PROBLEM)
    assert backend.run_tactic(root, "slow") == TacticOutcome("error", error="timeout")
    child = backend.run_tactic(root, "intro y")
    assert child.kind == "state" and child.state.goals == goals_of("s1")
    assert backend.run_tactic(child.state, "omega").kind == "finished"
    assert len(opener.opened) == 2 and opener.closed == 1  # the busy Lean was stopped and the theorem reopened
    backend.close()


def test_dojo_crash_reopens_the_theorem_and_replays_the_state():
    graph = {"s0": {"intro y": "s1"}, "s1": {"crash": "crash", "ring_nf": "s3"}, "s3": {"linarith": "done"}}
    backend, opener = dojo_backend(graph)
    root = backend.start(PROBLEM)
    s1 = backend.run_tactic(root, "intro y").state
    assert backend.run_tactic(s1, "crash") == TacticOutcome("error", error="LeanDojo crashed: Unexpected EOF")
    assert backend.run_tactic(s1, "nope").kind == "error"  # s1 is rebuilt in the new Lean first
    s3 = backend.run_tactic(s1, "ring_nf")  # on the rebuilt s1, not rebuilt twice
    assert s3.kind == "state" and s3.state.goals == goals_of("s3")
    assert backend.run_tactic(s3.state, "linarith").kind == "finished"
    assert backend.run_tactic(root, "intro y").state.goals == goals_of("s1")  # the first state is the new Lean's
    assert [d.calls for d in opener.opened] == [
        ["intro y", "crash"],
        ["intro y", "nope", "ring_nf", "linarith", "intro y"],
    ]
    backend.close()
    assert opener.closed == 2


def test_dojo_crashing_again_after_the_reopen_gives_the_statement_up():
    backend, opener = dojo_backend({"s0": {"a": "crash", "b": "crash", "c": "s1"}})
    root = backend.start(PROBLEM)
    assert backend.run_tactic(root, "a").kind == "error"
    with pytest.raises(
        SearchError,
        match=r"LeanDojo crashed again on 't' after it was reopened \(Unexpected EOF, then Unexpected EOF\); the statement is given up",
    ):
        backend.run_tactic(root, "b")
    assert opener.closed == len(opener.opened) == 2  # no Lean left running
    root = backend.start(PROBLEM)  # a later search opens the theorem afresh, with its own reopen
    assert backend.run_tactic(root, "a").kind == "error" and backend.run_tactic(root, "c").kind == "state"
    assert backend.start(PROBLEM) is root  # the next search, on the open theorem: again one reopen
    assert backend.run_tactic(root, "a").kind == "error" and backend.run_tactic(root, "c").kind == "state"
    assert len(opener.opened) == 5
    backend.close()


def test_dojo_open_failures():
    # DojoInitError (dojo.py 252-283, 374-392): the statement cannot be used, in LeanDojo's words
    backend, _ = dojo_backend(GRAPH, fail={1: "Failed to locate the theorem with `t` as its fully qualified name."})
    with pytest.raises(StatementError, match="LeanDojo cannot open 't': Failed to locate the theorem with `t`"):
        backend.start(PROBLEM)
    assert backend.start(PROBLEM).goals == goals_of("s0")  # nothing half-open was kept

    # anything else is LeanDojo failing, not the statement (dojo.py 248-250: a repository traced by an old LeanDojo)
    def outdated(problem):
        raise AssertionError("Unable to find Lean4Repl.lean in the traced repo.")

    with pytest.raises(SearchError, match="AssertionError: Unable to find Lean4Repl.lean"):
        DojoBackend(outdated).start(PROBLEM)

    # a theorem that opened once and then cannot be reopened after a crash
    backend, _ = dojo_backend({"s0": {"a": "crash", "b": "s1"}}, fail={2: "Unexpected EOF"})
    root = backend.start(PROBLEM)
    assert backend.run_tactic(root, "a").kind == "error"
    with pytest.raises(SearchError, match="LeanDojo could not reopen 't'.*: Unexpected EOF"):
        backend.run_tactic(root, "b")


def test_dojo_search_survives_a_timeout_and_a_crash():
    """The Dojo raises ``DojoTacticTimeoutError`` and ``DojoCrashError`` where lean-dojo 4.20.0's
    ``run_tac`` does (lean_dojo/interaction/dojo.py 449-517; see tests/dojo_double.py)."""
    graph = {"s0": {"intro y": "s1"}, "s1": {"slow": "slow: s2", "crash": "crash", "omega": "done"}}
    table = {(): [("intro y", -0.1)], ("intro y",): [("slow", -0.01), ("crash", -0.02), ("omega", -0.2)]}
    config = SearchConfig(strategy="best-first", budget=8, time_limit=60)
    config.best_first.tactics_per_expansion = 3
    backend, opener = dojo_backend(graph)
    with SearchSession(config, task=GraphTask(GraphVerifier(graph)), sampler=Policy(table), backend=backend) as session:
        result = session.search(PROBLEM)
    assert result.proved and result.proof == join_tactics(STATEMENT, ("intro y", "omega"))
    assert result.progress.errors["tactic: timeout"] == 1
    assert result.progress.errors["tactic: LeanDojo crashed: Unexpected EOF"] == 1
    # a new Lean after each, where `intro y` was replayed before the next tactic
    assert [d.calls for d in opener.opened] == [["intro y", "slow"], ["intro y", "crash"], ["intro y", "omega"]]
    assert opener.closed == 3


def test_dojo_open_failure_is_a_bad_statement_before_any_sampling():
    config = SearchConfig(strategy="best-first")
    config.best_first.backend = "dojo"
    backend, opener = dojo_backend(GRAPH, fail={1: "Cannot interact with theorems with the `where` keyword."})
    policy = Policy({})
    with SearchSession(config, task=GraphTask(GraphVerifier(GRAPH)), sampler=policy, backend=backend) as session:
        with pytest.raises(StatementError, match="`where` keyword"):
            session.check_statement(PROBLEM)
        session.check_statement(PROBLEM)  # opened now, and kept open for the search
        assert len(opener.opened) == 1 and opener.closed == 0
    assert policy.calls == 0


def test_open_leandojo_passes_the_theorem_and_both_timeouts(monkeypatch):
    """What ``open_leandojo`` hands LeanDojo; the real ``Dojo`` needs a traced repository and Lean,
    so a recorder with its constructor and ``__enter__`` (dojo.py 202-208, 241-298; its ``proc`` is
    the pexpect process, whose ``timeout`` every read uses, dojo.py 266-267 and 502) stands in."""
    lean_dojo_or_skip()
    import lean_dojo

    class RecordingDojo:
        def __init__(self, entry, timeout=600):
            self.entry, self.timeout, self.proc, self.exited = entry, timeout, SimpleNamespace(timeout=timeout), False

        def __enter__(self):
            return self, lean_dojo.TacticState(goals_of("s0"), 0)

        def __exit__(self, *exc):
            self.exited = True

    with pytest.raises(
        LeanSetupError, match="LeanDojo cannot use /nowhere at abc123: ValueError: /nowhere is not a valid URL"
    ):
        open_leandojo("/nowhere", "abc123", "R/T.lean", tactic_timeout=30, start_timeout=900)  # the real LeanGitRepo

    monkeypatch.setattr(lean_dojo, "Dojo", RecordingDojo)
    monkeypatch.setattr(lean_dojo, "LeanGitRepo", lambda url, commit: SimpleNamespace(url=url, commit=commit))
    opener = open_leandojo("https://github.com/o/r", "abc123", "R/T.lean", tactic_timeout=30, start_timeout=900)
    with opener(PROBLEM) as (dojo, initial):
        assert (
            dojo.entry.full_name == "t"
            and str(dojo.entry.file_path) == "R/T.lean"
            and dojo.entry.repo.commit == "abc123"
        )
        assert dojo.timeout == 900  # elaborating the file up to the theorem, imports included
        assert dojo.proc.timeout == 30  # then each tactic
    assert dojo.exited

    with pytest.raises(LeanSetupError, match="--best_first.dojo_commit"):
        open_leandojo("https://github.com/o/r", None, "R/T.lean", tactic_timeout=30, start_timeout=900)
    with pytest.raises(LeanSetupError, match="dojo_file must be a .lean file"):
        open_leandojo("https://github.com/o/r", "abc123", "R/T", tactic_timeout=30, start_timeout=900)
