"""Tactic-level best-first search over a small proof-state graph served by a double of each backend:
the REPL's tactic mode (a subprocess speaking its JSON protocol) and an object with LeanDojo's
``run_tac`` interface built from look-alikes of its result classes (lean-dojo is not installed here).
"""

from __future__ import annotations

import contextlib
import json
import sys
from dataclasses import dataclass, field, make_dataclass
from pathlib import Path

import pytest

from prover.data.problem import Problem
from prover.sampling.base import Completion, Sampler
from prover.search.backends import DojoBackend, ReplBackend
from prover.search.best_first import join_tactics
from prover.search.config import SearchConfig
from prover.search.engine import StatementError
from prover.search.session import SearchSession
from prover.tasks.base import Task
from prover.verifier.base import Verifier
from prover.verifier.config import VerifierConfig
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


# --- LeanDojo look-alikes: the result classes by their names, and a Dojo over the graph ----------


@dataclass(frozen=True)
class TacticState:
    pp: str
    id: int
    message: str | None = None


@dataclass(frozen=True)
class ProofFinished:
    tactic_state_id: int
    message: str | None = None


@dataclass(frozen=True)
class ProofGivenUp:
    pass


@dataclass(frozen=True)
class LeanError:
    error: str


DojoTimeoutError = make_dataclass("TimeoutError", [("error", str)], frozen=True)  # LeanDojo's own TimeoutError


class GraphDojo:
    def __init__(self, graph):
        self.graph = graph
        self.names = {0: "s0"}
        self.calls: list[str] = []

    def run_tac(self, state: TacticState, tactic: str):
        self.calls.append(tactic)
        target = self.graph.get(self.names[state.id], {}).get(tactic)
        if target is None:
            return LeanError(f"<stdin>:1:0: unknown tactic {tactic!r}")
        if target == "hang":
            return DojoTimeoutError("try_for_time tactic failed, timeout")
        if target.startswith("error: "):
            return LeanError(target[7:])
        if target == "sorry":
            return ProofGivenUp()
        new = len(self.names)
        self.names[new] = target
        return ProofFinished(new) if target == "done" else TacticState(goals_of(target), new)


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
            out.append([Completion(f"  {t}\n", [1, 2], lp, lp / 2, "stop") for t, lp in
                        (options[i % len(options)] for i in range(params.n))])
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
    dojo: list = field(default_factory=list)  # the Dojo doubles opened


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
            @contextlib.contextmanager
            def open_dojo(problem):
                dojo = GraphDojo(graph)
                setup.dojo.append(dojo)
                yield dojo, TacticState(goals_of("s0"), 0)

            backend = DojoBackend(open_dojo)
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
        ({(): [("simp at h", -0.1), ("intro y", -3.0)], ("simp at h",): [("norm_num at h", -0.1)],
          ("simp at h", "norm_num at h"): [("nlinarith [h]", -0.1)], LONG[:3]: [("exact h", -0.1)],
          ("intro y",): [("omega", -0.1)]}, LONG),
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
    assert result.progress.errors["tactic: forbidden"] >= 1 and result.progress.errors["tactic: exact? could not close the goal"] == 1
    sent = tactics_sent(setup.log) if setup.log else setup.dojo[0].calls
    assert "exact?" in sent and "sorry" not in sent  # screened before it reached Lean


def test_a_state_reached_twice_is_expanded_once(make_search):
    graph = {"s0": {"a": "s1", "b": "s1"}, "s1": {"c": "s2"}}
    setup = make_search(graph=graph, table=lambda done: [("a", -0.1), ("b", -0.2), ("c", -0.1)] if not done else [("c", -0.1)])
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
            session.check_statement(Problem("t", "theorem t /- double:error=unknown_identifier_'bad' -/ : bad = 1 := by\n", HEADER))
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


def test_dojo_results_are_read_by_class_name():
    @contextlib.contextmanager
    def open_dojo(problem):
        yield GraphDojo({"s0": {"t": "hang", "g": "sorry", "e": "error: boom", "n": "s1"}, "s1": {"f": "done"}}), TacticState("⊢ p", 0)

    backend = DojoBackend(open_dojo)
    root = backend.start(PROBLEM)
    assert backend.run_tactic(root, "t").error == "try_for_time tactic failed, timeout"
    assert backend.run_tactic(root, "g").kind == "given_up"
    assert backend.run_tactic(root, "e").error == "boom"
    child = backend.run_tactic(root, "n")
    assert child.kind == "state" and child.state.goals == goals_of("s1")
    assert backend.run_tactic(child.state, "f").kind == "finished"
    backend.close()
    backend.close()  # safe twice
