"""Tactic-level best-first search over a small proof-state graph served by a double of each backend:
the REPL's tactic mode (a subprocess speaking its JSON protocol) and an object with LeanDojo's
``run_tac`` interface built from look-alikes of its result classes (lean-dojo is not installed here).
"""

from __future__ import annotations

import contextlib
import json
import sys
import textwrap
from dataclasses import dataclass, field, make_dataclass

import pytest

from prover.data.problem import Problem
from prover.sampling.base import Completion, Sampler
from prover.search.backends import DojoBackend, ReplBackend, ReplProcess
from prover.search.best_first import join_tactics
from prover.search.config import SearchConfig
from prover.search.engine import StatementError
from prover.search.session import SearchSession
from prover.tasks.base import Task
from prover.verifier.base import Verifier
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


REPL_DOUBLE = textwrap.dedent(r'''
    """The Lean REPL's protocol over a state graph: command mode for the header and the statement
    with `sorry`, tactic mode for the rest. Logs every request to argv[2]."""
    import json, sys, time

    graph = json.load(open(sys.argv[1]))
    log = open(sys.argv[2], "a")
    states = {}

    def goals(state):
        return "x : ℕ\nh : 2 * x = 4\n⊢ x = 2 -- " + state

    def reply(obj):
        sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n\n")
        sys.stdout.flush()

    def new_state(name):
        states[len(states)] = name
        return len(states) - 1

    def requests():
        lines = []
        for line in sys.stdin:
            if line.strip():
                lines.append(line)
            elif lines:
                yield json.loads("".join(lines))
                lines = []

    log.write("start\n")
    log.flush()
    for req in requests():
        log.write(json.dumps(req, ensure_ascii=False) + "\n")
        log.flush()
        if "cmd" in req and "env" not in req:
            reply({"env": 0})
        elif "cmd" in req:
            if "bad" in req["cmd"]:
                reply({"env": 1, "messages": [{"severity": "error", "pos": {"line": 1, "column": 17}, "endPos": None,
                                                "data": "unknown identifier 'bad'"}]})
                continue
            k = new_state("s0")
            reply({"env": 1, "sorries": [{"proofState": k, "goal": goals("s0"), "pos": {"line": 2, "column": 2}, "endPos": None}],
                   "messages": [{"severity": "warning", "pos": {"line": 1, "column": 8}, "endPos": None, "data": "declaration uses 'sorry'"}]})
        elif req.get("proofState") not in states:
            reply({"message": "Unknown proof state."})
        else:
            target = graph.get(states[req["proofState"]], {}).get(req["tactic"])
            if target is None:
                reply({"message": "Lean error:\n<input>:1:0: unknown tactic"})
            elif target == "hang":
                time.sleep(3600)
            elif target.startswith("error: "):
                reply({"proofState": new_state("x"), "goals": [], "messages": [
                    {"severity": "error", "pos": {"line": 1, "column": 0}, "endPos": None, "data": target[7:]}]})
            elif target == "done":
                reply({"proofState": new_state("done"), "goals": [], "proofStatus": "Completed"})
            elif target == "sorry":
                reply({"proofState": new_state("done"), "goals": [], "proofStatus": "Incomplete: contains sorry"})
            else:
                reply({"proofState": new_state(target), "goals": [goals(target)], "proofStatus": "Incomplete: open goals remain"})
''')


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
            script, graph_file = tmp_path / "repl_double.py", tmp_path / "graph.json"
            script.write_text(REPL_DOUBLE)
            graph_file.write_text(json.dumps(graph))
            setup.log = tmp_path / "repl.log"
            config.verifier.repl_command = [sys.executable, str(script), str(graph_file), str(setup.log)]
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
    sent = [json.loads(r).get("tactic") for r in setup.log.read_text().splitlines()[1:]] if setup.log else setup.dojo[0].calls
    assert "exact?" in sent and "sorry" not in sent  # screened before it reached Lean


def test_a_state_reached_twice_is_expanded_once(make_search):
    graph = {"s0": {"a": "s1", "b": "s1"}, "s1": {"c": "s2"}}
    setup = make_search(graph=graph, table=lambda done: [("a", -0.1), ("b", -0.2), ("c", -0.1)] if not done else [("c", -0.1)])
    result = setup.session.search(PROBLEM)
    assert result.outcome == "exhausted" and result.progress.expansions == 3  # s0, s1 (once), s2


def test_statement_rejected_by_lean_before_any_sampling(tmp_path):
    script, graph_file = tmp_path / "repl_double.py", tmp_path / "graph.json"
    script.write_text(REPL_DOUBLE)
    graph_file.write_text(json.dumps(GRAPH))
    config = SearchConfig()
    config.verifier.repl_command = [sys.executable, str(script), str(graph_file), str(tmp_path / "log")]
    policy = Policy({})
    with SearchSession(config, task=GraphTask(GraphVerifier(GRAPH)), sampler=policy) as session:
        with pytest.raises(StatementError, match="unknown identifier 'bad'"):
            session.check_statement(Problem("t", "theorem t : bad = 1 := by\n", HEADER))
        session.check_statement(PROBLEM)  # a good statement passes
    assert policy.calls == 0


def test_repl_restarts_after_a_hung_tactic_and_replays_the_state(tmp_path):
    graph = {"s0": {"intro y": "s1"}, "s1": {"slow": "hang", "omega": "done"}}
    script, graph_file, log = tmp_path / "repl_double.py", tmp_path / "graph.json", tmp_path / "log"
    script.write_text(REPL_DOUBLE)
    graph_file.write_text(json.dumps(graph))
    backend = ReplBackend(lambda: ReplProcess([sys.executable, str(script), str(graph_file), str(log)]), timeout=1.0)
    table = {(): [("intro y", -0.1)], ("intro y",): [("slow", -0.01), ("omega", -0.2)]}
    config = SearchConfig(strategy="best-first")
    config.best_first.tactics_per_expansion = 2
    with SearchSession(config, task=GraphTask(GraphVerifier(graph)), sampler=Policy(table), backend=backend) as session:
        result = session.search(PROBLEM)
    assert result.proved and result.proof == join_tactics(STATEMENT, ("intro y", "omega"))
    assert result.progress.errors["tactic: timeout"] == 1
    requests = log.read_text().splitlines()
    assert requests.count("start") == 2  # the hung REPL was killed and a new one started
    # the new process rebuilt `intro y` before running `omega` on it
    assert [json.loads(r).get("tactic") for r in requests[requests.index("start", 1):] if r != "start"][-2:] == ["intro y", "omega"]


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
