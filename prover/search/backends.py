"""Where proof states come from for the tactic-level search: the Lean REPL's tactic mode, or LeanDojo.

Both answer "run this tactic on that state" with a new state, "no goals left", or an error. LeanDojo
is optional and imported only when its backend is made.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from prover.data.problem import Problem
from prover.search.engine import SearchError, StatementError
from prover.verifier import sandbox
from prover.verifier.config import VerifierConfig
from prover.verifier.errors import LeanSetupError, ReplError, ReplTimeout
from prover.verifier.judge import judge_command

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

    def __init__(
        self,
        config: VerifierConfig,
        name: str = "tactic-repl",
        record: Callable[[dict[str, Any], bytes], None] | None = None,
    ):
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
        self._repl = ReplProcess(
            argv,
            env=env,
            sandbox=policy,
            scratch_root=config.scratch_dir,
            max_response_bytes=config.max_response_mb << 20,
            name=name,
            record=record,
        )
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


def tactic_outcome(response: dict[str, Any]) -> TacticOutcome | None:
    """What the REPL's answer to a tactic says; None when it shows no goals but does not say whether
    the proof is complete.

    Read from the REPL's recorded answers (../shared/golden/repl): a failing tactic answers a new
    state with ``goals: []`` plus the error (``invalid_tactic``); a ``sorry`` shows as a non-empty
    ``sorries`` (``tactic_mode_sorry``); ``proofStatus`` exists from REPL v4.19.0 on (PR #63) and only
    "Completed" means complete ("Incomplete: contains metavariable(s)" also shows no goals,
    ``name_generator``). Before v4.19.0 nothing tells a finished proof from one with metavariables
    left, so None asks the caller to check the whole script.
    """
    if "proofState" not in response:  # {"message": "Lean error: ..."}: the tactic did not parse or run
        return TacticOutcome("error", error=str(response.get("message", response)).removeprefix("Lean error:\n"))
    if errors := _errors(response):
        return TacticOutcome("error", error=errors[0].split(": ", 1)[-1])
    if response.get("sorries"):
        return TacticOutcome("given_up")
    goals = response.get("goals") or []
    status = response.get("proofStatus")
    if goals and (status is None or status.startswith("Incomplete: open goals")):
        return TacticOutcome("state", ProofState("\n\n".join(goals), None))
    if status is None:
        return None
    if status == "Completed" and not goals:
        return TacticOutcome("finished")
    if "sorry" in status:
        return TacticOutcome("given_up")
    return TacticOutcome("error", error=status)  # "Error: kernel type check failed", metavariables left


class ReplBackend(ProofStateBackend):
    """The REPL's tactic mode: the theorem stated with ``sorry`` gives the first proof state.

    A tactic that hangs or crashes Lean costs the process and every state in it; the REPL is
    restarted and a state of the dead process is rebuilt by replaying its tactics. A tactic that
    leaves no goals counts as finishing the proof only when the REPL says "Completed"; a REPL too old
    to say (before v4.19.0, the pinned v4.9.0 included) has the whole tactic script checked in
    command mode first (``tactic_outcome``).
    """

    def __init__(
        self,
        start_process: Callable[[], Any],
        timeout: float = 60.0,
        start_timeout: float = 600.0,
        recycle_after: int = 500,
    ):
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
    def from_config(cls, config: VerifierConfig, timeout: float = 60.0) -> ReplBackend:
        return cls(
            lambda: LeanRepl(config),
            timeout=timeout,
            start_timeout=config.start_timeout,
            recycle_after=config.max_checks_per_worker,
        )

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
            raise StatementError(
                "Lean rejects the statement (checked with `sorry` as its proof):\n" + "\n".join(errors)
            )
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
                raise SearchError(
                    f"replaying {handle.tactics} after a REPL restart failed at {tactic!r}: {outcome.error or outcome.kind}"
                )
            state = outcome.state
        return state.handle.proof_state

    def run_tactic(self, state: ProofState, tactic: str) -> TacticOutcome:
        handle: _ReplHandle = state.handle
        try:
            response = self._request({"tactic": tactic, "proofState": self._live(handle)}, self.timeout)
            outcome = tactic_outcome(response)
            if outcome is None:  # no goals, and a REPL that does not say whether the proof is complete
                outcome = self._check_script(handle.root, handle.tactics + (tactic,))
        except ReplError as exc:  # a hung or crashed Lean costs the process, not the search
            logger.warning("tactic %r: %s; the REPL will be restarted", tactic, exc)
            return TacticOutcome(
                "error", error="timeout" if isinstance(exc, ReplTimeout) else f"Lean failed: {exc.reason}"
            )
        if outcome.kind == "state":
            child = _ReplHandle(self._generation, response["proofState"], handle.root, handle.tactics + (tactic,))
            return TacticOutcome("state", ProofState(outcome.state.goals, child))
        return outcome

    def _check_script(self, root: tuple[str, str], tactics: tuple[str, ...]) -> TacticOutcome:
        """Finished only when the statement with these tactics as its proof checks in command mode with
        no error and no sorry (the verifier still checks the proof, axioms included, afterwards)."""
        from prover.search.best_first import join_tactics  # best_first imports this module

        header, statement = root
        request: dict[str, Any] = {"cmd": statement + join_tactics(statement, tactics)}
        if header.strip():
            request["env"] = self._envs[header]
        response = self._request(request, self.timeout)
        if "env" not in response:
            return TacticOutcome(
                "error", error=f"the REPL could not check the tactics: {response.get('message', response)}"
            )
        verdict = judge_command(response)
        if verdict is None:
            return TacticOutcome("finished")
        if verdict.check == "sorry":
            return TacticOutcome("given_up")
        return TacticOutcome("error", error=f"no goals shown, but the proof does not check: {verdict.reason}")

    def close(self) -> None:
        if self._repl is not None:
            self._repl.close()
            self._repl = None


# --- LeanDojo ---------------------------------------------------------------------------------------


def _lean_dojo():
    """The lean_dojo module; ``LeanSetupError`` saying how to install it when it does not import."""
    try:
        import lean_dojo
    except ImportError as exc:
        raise LeanSetupError(f"best_first.backend=dojo needs LeanDojo: pip install -e .[dojo] ({exc})") from exc
    except Exception as exc:  # importing it runs `git --version` and asserts git >= 2.25 (lean_dojo/constants.py)
        raise LeanSetupError(f"LeanDojo does not import: {type(exc).__name__}: {exc}") from exc
    return lean_dojo


@dataclass(frozen=True)
class _DojoHandle:
    state: Any  # lean_dojo.TacticState, numbered by the Lean process that made it
    generation: int  # which opening of the theorem that process was
    tactics: tuple[str, ...]  # from the first state: replayed when the state's process is gone


class DojoBackend(ProofStateBackend):
    """LeanDojo's ``Dojo`` (lean-dojo 4.20): ``run_tac`` answers ``TacticState``, ``ProofFinished``,
    ``ProofGivenUp`` (the proof used ``sorry``) or ``LeanError``, and raises on a timeout or a crash.

    ``open_dojo(problem)`` returns a context manager that yields ``(dojo, initial_state)``, as
    ``lean_dojo.Dojo(theorem)`` does; one theorem is open at a time. A timed-out tactic is a failed
    tactic, but Lean goes on running it and would print its answer where the next tactic's is read,
    so that Lean is stopped; a crash stops it too. Either way the theorem is reopened for the next
    tactic and the state rebuilt by replaying its tactics. A theorem whose Lean crashes again after
    ``crash_reopens`` reopens in one search is given up: that search ends with ``SearchError``.
    """

    def __init__(
        self, open_dojo: Callable[[Problem], contextlib.AbstractContextManager[tuple[Any, Any]]], crash_reopens: int = 1
    ):
        self._open_dojo = open_dojo
        self.crash_reopens = crash_reopens
        self._lean_dojo = _lean_dojo()
        self._stack = contextlib.ExitStack()
        self._dojo = None
        self._problem: Problem | None = None
        self._root: ProofState | None = None
        self._generation = 0
        self._live: dict[
            tuple[str, ...], Any
        ] = {}  # tactics from the first state -> the state replayed in the open Dojo
        self._crashes: list[str] = []  # crashes in this search of the theorem, oldest first

    def start(self, problem: Problem) -> ProofState:
        if self._problem is None or (problem.name, problem.statement) != (self._problem.name, self._problem.statement):
            self.close()
            initial = self._open(problem)
            self._problem = problem
            self._root = ProofState(initial.pp, _DojoHandle(initial, self._generation, ()))
        self._crashes = []  # each search of the theorem may reopen it after a crash
        return self._root

    def _open(self, problem: Problem) -> Any:
        """Open the theorem in a new Lean process; its first state."""
        stack = contextlib.ExitStack()
        try:
            self._dojo, initial = stack.enter_context(self._open_dojo(problem))
        except self._lean_dojo.DojoInitError as exc:
            raise StatementError(f"LeanDojo cannot open {problem.name!r}: {exc}") from exc
        except (
            Exception
        ) as exc:  # tracing, git, an old trace without Lean4Repl.lean: LeanDojo failed, not the statement
            raise SearchError(f"LeanDojo could not open {problem.name!r}: {type(exc).__name__}: {exc}") from exc
        self._stack = stack
        self._generation += 1
        self._live = {(): initial}
        return initial

    def _discard(self) -> None:
        """Stop the open theorem's Lean (``Dojo.__exit__`` kills the process tree); its states go with it."""
        stack, self._stack, self._dojo, self._live = self._stack, contextlib.ExitStack(), None, {}
        try:
            stack.close()
        except Exception as exc:  # a Lean already dead, a temporary file already gone: nothing left to stop
            logger.warning("closing LeanDojo's Dojo: %s: %s", type(exc).__name__, exc)

    def _reopen(self) -> None:
        try:
            self._open(self._problem)
        except (StatementError, SearchError) as exc:
            problem = self._problem
            self.close()
            raise SearchError(
                f"LeanDojo could not reopen {problem.name!r} after its Lean stopped: {exc.__cause__ or exc}"
            ) from exc

    def _state_in_open_dojo(self, handle: _DojoHandle) -> Any:
        """``handle``'s state in the open Dojo: its own when that made it, else rebuilt by replaying its tactics."""
        if handle.generation == self._generation and self._dojo is not None:
            return handle.state
        if self._dojo is None:
            self._reopen()
        for depth in range(len(handle.tactics)):
            prefix = handle.tactics[: depth + 1]
            if prefix not in self._live:
                result = self._dojo.run_tac(self._live[prefix[:-1]], prefix[-1])
                if not isinstance(result, self._lean_dojo.TacticState):
                    raise SearchError(
                        f"replaying {handle.tactics} after LeanDojo was reopened failed at {prefix[-1]!r}: {result}"
                    )
                self._live[prefix] = result
        return self._live[handle.tactics]

    def run_tactic(self, state: ProofState, tactic: str) -> TacticOutcome:
        lean_dojo, handle = self._lean_dojo, state.handle
        try:
            live = self._state_in_open_dojo(handle)  # first: it may reopen the theorem
            result = self._dojo.run_tac(live, tactic)
        except lean_dojo.DojoTacticTimeoutError:
            logger.warning("tactic %r timed out; LeanDojo's Lean is stopped and the theorem reopened", tactic)
            self._discard()
            return TacticOutcome("error", error="timeout")
        except lean_dojo.DojoCrashError as exc:  # "Unexpected EOF", "Invalid JSON: ...", "OOM", an exit code
            self._crashes.append(str(exc))
            self._discard()
            if len(self._crashes) > self.crash_reopens:
                name, crashes = self._problem.name, ", then ".join(self._crashes)
                self.close()
                raise SearchError(
                    f"LeanDojo crashed again on {name!r} after it was reopened ({crashes}); the statement is given up"
                ) from exc
            logger.warning("LeanDojo crashed on tactic %r (%s); the theorem will be reopened", tactic, exc)
            return TacticOutcome("error", error=f"LeanDojo crashed: {exc}")
        if isinstance(result, lean_dojo.TacticState):
            child = _DojoHandle(result, self._generation, handle.tactics + (tactic,))
            return TacticOutcome("state", ProofState(result.pp, child))
        if isinstance(result, lean_dojo.ProofFinished):
            return TacticOutcome("finished")
        if isinstance(result, lean_dojo.ProofGivenUp):
            return TacticOutcome("given_up")
        if isinstance(result, lean_dojo.LeanError):
            return TacticOutcome("error", error=result.error)
        raise SearchError(f"LeanDojo answered {type(result).__name__}, which this backend does not know")

    def close(self) -> None:
        self._discard()
        self._problem = self._root = None
        self._crashes = []


def open_leandojo(
    repo: str | None, commit: str | None, file: str | None, tactic_timeout: float, start_timeout: float
) -> Callable[[Problem], contextlib.AbstractContextManager]:
    """An opener for ``DojoBackend`` over a traced repository: the theorem is looked up by the problem's name.

    ``LeanSetupError`` (the command line's "Lean is not set up", exit status 2) for missing or bad settings.
    """
    missing = [name for name, value in (("dojo_repo", repo), ("dojo_commit", commit), ("dojo_file", file)) if not value]
    if missing:
        raise LeanSetupError(f"best_first.backend=dojo needs --best_first.{' --best_first.'.join(missing)}")
    if not file.endswith(".lean"):
        raise LeanSetupError(f"best_first.dojo_file must be a .lean file inside dojo_repo, got {file!r}")
    lean_dojo = _lean_dojo()
    try:
        git_repo = lean_dojo.LeanGitRepo(repo, commit)  # clones the repository (once, into LeanDojo's cache)
    except Exception as exc:  # not a git URL or path, no such commit, no network
        raise LeanSetupError(f"LeanDojo cannot use {repo} at {commit}: {type(exc).__name__}: {exc}") from exc

    @contextlib.contextmanager
    def open_dojo(problem: Problem):
        # Dojo has one timeout, pexpect's, for every read of Lean's answers (lean_dojo/interaction/dojo.py
        # 266-267, 502 at 4.20.0): the first comes once Lean has elaborated the file up to the theorem,
        # imports included (minutes with Mathlib), so it gets start_timeout, and each tactic tactic_timeout.
        with lean_dojo.Dojo(lean_dojo.Theorem(git_repo, file, problem.name), timeout=start_timeout) as (dojo, initial):
            dojo.proc.timeout = tactic_timeout
            yield dojo, initial

    return open_dojo
