"""Where proof states come from for the tactic-level search: the Lean REPL's tactic mode, or LeanDojo.

Both answer "run this tactic on that state" with a new state, "no goals left", or an error. LeanDojo
is optional and imported only when used; its results are recognised by class name, so anything with
its ``run_tac`` interface (a test double included) works.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ContextManager, Literal

from prover.data.problem import Problem
from prover.search.engine import SearchError, StatementError
from prover.verifier import sandbox
from prover.verifier.config import VerifierConfig
from prover.verifier.errors import LeanSetupError, ReplError, ReplTimeout

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProofState:
    goals: str  # pretty-printed goals: shown to users and used to spot states reached twice
    handle: Any = field(compare=False)  # the backend's own reference to the state


@dataclass(frozen=True)
class TacticOutcome:
    kind: Literal["state", "finished", "error", "given_up"]
    state: ProofState | None = None  # for kind == "state"
    error: str = ""  # for kind == "error"


class ProofStateBackend(abc.ABC):
    """Tactic-by-tactic access to a theorem's proof states."""

    @abc.abstractmethod
    def start(self, problem: Problem) -> ProofState:
        """The theorem's first proof state; raises ``StatementError`` when Lean rejects the statement."""

    @abc.abstractmethod
    def run_tactic(self, state: ProofState, tactic: str) -> TacticOutcome:
        """Apply one tactic to ``state``; a failing tactic is an outcome, a broken backend raises."""

    def close(self) -> None:
        """Stop processes. Safe to call twice."""


# --- the Lean REPL (leanprover-community/repl) ------------------------------------------------------


class LeanRepl:
    """One REPL process as the verifier starts its workers (same launch, sandbox and rlimits: the
    tactics come from the model), driven synchronously through a private event loop thread."""

    def __init__(self, config: VerifierConfig, name: str = "tactic-repl"):
        from prover.verifier.lean_project import repl_launch
        from prover.verifier.repl import ReplProcess

        argv, env = repl_launch(config)  # LeanSetupError says how to fix a missing project
        try:
            policy = sandbox.policy_for(config, argv, env)
        except ValueError as exc:
            raise LeanSetupError(str(exc)) from exc
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self._repl = ReplProcess(argv, env=env, sandbox=policy, scratch_root=config.scratch_dir,
                                 max_response_bytes=config.max_response_mb << 20, name=name)
        try:
            self._run(self._repl.start())
        except BaseException:
            self.close()
            raise

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def request(self, payload: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """The answer to one request; ``ReplError`` (the process is then dead) on a timeout or crash."""
        return self._run(self._repl.request(payload, timeout))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        with contextlib.suppress(Exception):
            self._run(self._repl.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


@dataclass(frozen=True)
class _ReplHandle:
    generation: int  # the REPL process the proof state lives in
    proof_state: int
    root: tuple[str, str]  # (header, statement) of the theorem
    tactics: tuple[str, ...]  # from the first state: replayed when the state's process has died


def _errors(response: dict[str, Any]) -> list[str]:
    return [
        f"{m.get('pos', {}).get('line', '?')}:{m.get('pos', {}).get('column', '?')}: {m.get('data', '')}"
        for m in response.get("messages", [])
        if m.get("severity") == "error"
    ]


class ReplBackend(ProofStateBackend):
    """The REPL's tactic mode: the theorem stated with ``sorry`` gives the first proof state.

    A tactic that hangs or crashes Lean costs the process and every state in it; the REPL is
    restarted and a state of the dead process is rebuilt by replaying its tactics.
    """

    def __init__(self, start_process: Callable[[], Any], timeout: float = 60.0, start_timeout: float = 600.0,
                 recycle_after: int = 500):
        self._start_process = start_process  # () -> a LeanRepl, or anything with its request() and close()
        self.timeout = timeout
        self.start_timeout = start_timeout
        # The REPL never frees a state: between theorems, a process that served this many requests is replaced.
        self.recycle_after = recycle_after
        self._served = 0
        self._repl = None
        self._generation = 0
        self._envs: dict[str, int] = {}  # header -> env
        self._roots: dict[tuple[str, str], ProofState] = {}

    @classmethod
    def from_config(cls, config: VerifierConfig, timeout: float = 60.0) -> "ReplBackend":
        return cls(lambda: LeanRepl(config), timeout=timeout, start_timeout=config.start_timeout,
                   recycle_after=config.max_checks_per_worker)

    def _request(self, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
        if self._repl is None:
            self._repl = self._start_process()
        self._served += 1
        try:
            return self._repl.request(payload, timeout)
        except ReplError:
            self._reset()
            raise

    def _reset(self) -> None:
        if self._repl is not None:
            self._repl.close()
        self._repl = None
        self._served = 0
        self._generation += 1
        self._envs.clear()
        self._roots.clear()

    def start(self, problem: Problem) -> ProofState:
        key = (problem.header, problem.statement)
        if key in self._roots:
            return self._roots[key]
        if self._served >= self.recycle_after:
            self._reset()
        request: dict[str, Any] = {"cmd": problem.statement.rstrip() + "\n  sorry"}
        if problem.header.strip():
            if problem.header not in self._envs:
                response = self._request({"cmd": problem.header}, self.start_timeout)
                if "env" not in response or _errors(response):
                    raise SearchError(f"the header does not check: {_errors(response) or response.get('message')}")
                self._envs[problem.header] = response["env"]
            request["env"] = self._envs[problem.header]
        response = self._request(request, self.start_timeout)
        if "env" not in response:  # {"message": ...}: the REPL itself failed, not the statement
            raise SearchError(f"the REPL could not check the statement: {response.get('message', response)}")
        if errors := _errors(response):
            raise StatementError("Lean rejects the statement (checked with `sorry` as its proof):\n" + "\n".join(errors))
        sorries = response.get("sorries") or []
        if len(sorries) != 1:
            raise StatementError(f"expected one `sorry` (the proof) after the statement, Lean found {len(sorries)}")
        root = ProofState(sorries[0].get("goal", ""), _ReplHandle(self._generation, sorries[0]["proofState"], key, ()))
        self._roots[key] = root
        return root

    def _live(self, handle: _ReplHandle) -> int:
        """The state's number in the current process, replaying its tactics after a restart."""
        if handle.generation == self._generation:
            return handle.proof_state
        header, statement = handle.root
        state = self.start(Problem(name="replay", statement=statement, header=header))
        for tactic in handle.tactics:
            outcome = self.run_tactic(state, tactic)
            if outcome.kind != "state":
                raise SearchError(f"replaying {handle.tactics} after a REPL restart failed at {tactic!r}: {outcome.error or outcome.kind}")
            state = outcome.state
        return state.handle.proof_state

    def run_tactic(self, state: ProofState, tactic: str) -> TacticOutcome:
        handle: _ReplHandle = state.handle
        try:
            response = self._request({"tactic": tactic, "proofState": self._live(handle)}, self.timeout)
        except ReplError as exc:  # a hung or crashed Lean costs the process, not the search
            logger.warning("tactic %r: %s; the REPL will be restarted", tactic, exc)
            return TacticOutcome("error", error="timeout" if isinstance(exc, ReplTimeout) else f"Lean failed: {exc.reason}")
        if "proofState" not in response:  # {"message": "Lean error: ..."}: the tactic did not parse or run
            return TacticOutcome("error", error=str(response.get("message", response)).removeprefix("Lean error:\n"))
        if errors := _errors(response):
            return TacticOutcome("error", error=errors[0].split(": ", 1)[-1])
        status = response.get("proofStatus") or ""
        goals = response.get("goals") or []
        if status.startswith("Error"):
            return TacticOutcome("error", error=status)
        if goals:
            child = _ReplHandle(self._generation, response["proofState"], handle.root, handle.tactics + (tactic,))
            return TacticOutcome("state", ProofState("\n\n".join(goals), child))
        if "sorry" in status:
            return TacticOutcome("given_up")
        if status.startswith("Incomplete"):  # no goals, yet metavariables left
            return TacticOutcome("error", error=status)
        return TacticOutcome("finished")

    def close(self) -> None:
        if self._repl is not None:
            self._repl.close()
            self._repl = None


# --- LeanDojo ---------------------------------------------------------------------------------------


class DojoBackend(ProofStateBackend):
    """LeanDojo's ``Dojo``: ``run_tac`` answers TacticState, ProofFinished, ProofGivenUp or an error.

    ``open_dojo(problem)`` returns a context manager that yields ``(dojo, initial_state)``, as
    ``lean_dojo.Dojo(theorem)`` does; one theorem is open at a time.
    """

    def __init__(self, open_dojo: Callable[[Problem], ContextManager[tuple[Any, Any]]]):
        self._open_dojo = open_dojo
        self._stack = contextlib.ExitStack()
        self._dojo = None
        self._key: tuple[str, str] | None = None
        self._root: ProofState | None = None

    def start(self, problem: Problem) -> ProofState:
        key = (problem.name, problem.statement)
        if key != self._key:
            self.close()
            try:
                self._dojo, initial = self._stack.enter_context(self._open_dojo(problem))
            except Exception as exc:  # LeanDojo raises DojoInitError, among others
                raise StatementError(f"LeanDojo could not open {problem.name!r}: {type(exc).__name__}: {exc}") from exc
            self._key, self._root = key, ProofState(_pretty(initial), initial)
        return self._root

    def run_tactic(self, state: ProofState, tactic: str) -> TacticOutcome:
        result = self._dojo.run_tac(state.handle, tactic)
        kind = type(result).__name__
        if kind == "TacticState":
            return TacticOutcome("state", ProofState(_pretty(result), result))
        if kind == "ProofFinished":
            return TacticOutcome("finished")
        if kind == "ProofGivenUp":
            return TacticOutcome("given_up")
        if kind in ("LeanError", "TacticError", "TimeoutError"):
            return TacticOutcome("error", error=str(getattr(result, "error", result)))
        raise SearchError(f"LeanDojo answered {kind}, which this backend does not know")

    def close(self) -> None:
        self._stack.close()
        self._stack = contextlib.ExitStack()
        self._dojo = self._key = self._root = None


def _pretty(state: Any) -> str:
    return str(getattr(state, "pp", None) or getattr(state, "pretty_print", ""))


def open_leandojo(repo: str | None, commit: str | None, file: str | None) -> Callable[[Problem], ContextManager]:
    """An opener for ``DojoBackend`` over a traced repository: the theorem is looked up by the problem's name."""
    missing = [name for name, value in (("dojo_repo", repo), ("dojo_commit", commit), ("dojo_file", file)) if not value]
    if missing:
        raise SearchError(f"best_first.backend=dojo needs --best_first.{' --best_first.'.join(missing)}")
    try:
        from lean_dojo import Dojo, LeanGitRepo, Theorem
    except ImportError as exc:
        raise SearchError("best_first.backend=dojo needs LeanDojo: pip install -e .[dojo]") from exc
    git_repo = LeanGitRepo(repo, commit)
    return lambda problem: Dojo(Theorem(git_repo, file, problem.name))
