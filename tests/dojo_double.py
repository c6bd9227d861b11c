"""A stand-in for lean-dojo 4.20.0's ``Dojo`` in tactic mode over a proof-state graph, answering with
the package's own result classes and raising its own exceptions (lean_dojo must be importable).

What it copies from lean-dojo 4.20.0 (``lean_dojo/interaction/dojo.py`` and the Lean side of the
protocol, ``lean_dojo/interaction/Lean4Repl.lean``, as installed from PyPI):

* ``Dojo.__enter__`` (dojo.py 241-298) yields ``(dojo, TacticState(pp, 0))``: the first state is
  number 0; failing to open raises ``DojoInitError`` with LeanDojo's message (dojo.py 252-283, 374-392).
* ``Dojo.run_tac`` (dojo.py 406-431): ``RuntimeError`` for a state that is not a ``TacticState``;
  ``LeanError(error.strip())`` for a tactic Lean rejects; ``ProofGivenUp()`` when the error is
  "proof contains `sorry`"; ``ProofFinished(sid, message)`` when the state is "no goals";
  otherwise ``TacticState(pp, sid, message)``. ``message`` is what Lean printed before the answer
  line, "" when nothing (dojo.py 473, 511).
* State numbers belong to one Lean process: the next one is the count of states saved so far, a
  failing tactic saves none, a finished proof saves one (Lean4Repl.lean ``handleRunTac``,
  ``validateProof``, ``getNextSid``). A number from another process names whatever state has that
  number in this one.
* ``_read_next_line`` (dojo.py 487-517): past the timeout, ``DojoTacticTimeoutError()`` (no
  message) while Lean goes on running the tactic (nothing in Lean4Repl.lean stops it), so its
  answer, when it comes, is the line read for the next request (dojo.py 463-465).
* ``_submit_request`` and ``_check_alive`` (dojo.py 449-485): Lean dying during a request raises
  ``DojoCrashError("Unexpected EOF")``; every later request finds the process dead and raises
  ``DojoCrashError("OOM")`` for exit status 137 (what the double's crashes use), else
  ``"Unexpected exit code: N"``. A state number the process never made ends its REPL loop
  ("[fatal] unknown tsid", Lean4Repl.lean ``handleRunTac``), and Lean exits: the same crash, status 1.

Graph: ``{state: {tactic: target}}``, the theorem starting at "s0". A target is a state name,
"done" (no goals left), "sorry" (Lean's answer "proof contains `sorry`"), "error: MESSAGE",
"slow: TARGET" (times out; Lean later answers TARGET) or "crash" (Lean dies: out of memory).
"""

from __future__ import annotations

import contextlib
from collections import deque

from lean_dojo import (
    DojoCrashError,
    DojoInitError,
    DojoTacticTimeoutError,
    LeanError,
    ProofFinished,
    ProofGivenUp,
    TacticState,
)

OOM_EXIT = 137  # what dojo.py 482-483 reads as "OOM"


def goals_of(state: str) -> str:
    """The pretty-printed goal of a graph state, as Lean4Repl.lean's ``ppTacticState`` prints one goal."""
    return f"x : ℕ\nh : 2 * x = 4\n⊢ x = 2 -- {state}"


class GraphDojo:
    """One opened theorem: one Lean process serving the graph."""

    def __init__(self, graph: dict[str, dict[str, str]]):
        self.graph = graph
        self.saved = ["s0"]  # state number -> graph state, in this process
        self.pending: deque[dict] = deque()  # answers Lean printed (or will print) that were not read yet
        self.exit_code: int | None = None  # set when the process has died
        self.calls: list[str] = []  # tactics received, in order

    def run_tac(self, state: TacticState, tactic: str):
        if not isinstance(state, TacticState):
            raise RuntimeError(f"Attempting to run a tactic on an invalid state {state}.")
        if self.exit_code is not None:
            raise DojoCrashError("OOM" if self.exit_code == OOM_EXIT else f"Unexpected exit code: {self.exit_code}")
        self.calls.append(tactic)
        if state.id >= len(self.saved):  # "[fatal] unknown tsid" ends the REPL tactic; Lean exits with the error
            self._die(1)
        target = self.graph.get(self.saved[state.id], {}).get(tactic)
        if target == "crash":
            self._die(OOM_EXIT)
        slow = target is not None and target.startswith("slow: ")
        self.pending.append(self._answer(target.removeprefix("slow: ") if slow else target))
        if slow:
            raise DojoTacticTimeoutError()
        res = self.pending.popleft()
        if res["error"] is not None:
            return ProofGivenUp() if "proof contains `sorry`" in res["error"] else LeanError(res["error"].strip())
        if res["tacticState"] == "no goals":
            return ProofFinished(res["sid"], "")
        return TacticState(res["tacticState"], res["sid"], "")

    def _die(self, exit_code: int):
        self.exit_code, self.pending = exit_code, deque()
        raise DojoCrashError("Unexpected EOF")

    def _answer(self, target: str | None) -> dict:
        """Lean4Repl.lean's JSON response to one tactic leading to ``target``."""
        if target is None:
            return {"error": "<stdin>:1:0: unknown tactic", "sid": None, "tacticState": None}
        if target.startswith("error: "):
            return {"error": target.removeprefix("error: "), "sid": None, "tacticState": None}
        if target == "sorry":
            return {"error": "proof contains `sorry`", "sid": None, "tacticState": None}
        self.saved.append(target)
        return {
            "error": None,
            "sid": len(self.saved) - 1,
            "tacticState": "no goals" if target == "done" else goals_of(target),
        }


class GraphDojoOpener:
    """``open_dojo`` for ``DojoBackend``: each call opens the theorem in a fresh ``GraphDojo``, as
    ``lean_dojo.Dojo(theorem)`` starts a fresh Lean process; ``fail`` maps an opening's number
    (1 = the first) to the message of the ``DojoInitError`` it raises."""

    def __init__(self, graph: dict[str, dict[str, str]], fail: dict[int, str] | None = None):
        self.graph = graph
        self.fail = fail or {}
        self.opened: list[GraphDojo] = []
        self.attempts = 0
        self.closed = 0

    @contextlib.contextmanager
    def __call__(self, problem):
        self.attempts += 1
        if self.attempts in self.fail:
            raise DojoInitError(self.fail[self.attempts])
        dojo = GraphDojo(self.graph)
        self.opened.append(dojo)
        try:
            yield dojo, TacticState(goals_of("s0"), 0)
        finally:
            self.closed += 1
