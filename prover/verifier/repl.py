"""One REPL process and its protocol (leanprover-community/repl, or anything that speaks it).

Protocol: a request is one line of JSON (``json.dumps`` escapes newlines: the REPL joins a request's
lines after trimming them, so a raw newline inside a string would be lost) followed by a blank
line. An answer is a JSON object, pretty-printed over several lines, followed by a blank line; JSON
never contains a blank line, so an answer is everything up to the next ``\\n\\n``.

The process runs in its own session (so its whole process group can be killed at once), in a
private scratch directory with a clean environment, confined as ``sandbox.py`` says.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prover.verifier import sandbox as sandbox_mod
from prover.verifier.errors import ReplCrashed, ReplProtocolError, ReplTimeout

logger = logging.getLogger(__name__)

_PAGE = os.sysconf("SC_PAGE_SIZE")
SCRATCH_PREFIX = "prover-repl-"  # + the owning process's pid + "-": a crashed owner's leftovers can be found
_BASE_PATH = "/usr/local/bin:/usr/bin:/bin"
RELEASE_TRIES = 200  # x 10 ms: how long close() waits for the kernel to let go of a dead worker's cgroup
EXIT_GRACE = 1.0  # seconds a REPL that closed its output gets to exit by itself (its init reaps first)


def sweep_stale_scratch(root: str | None = None) -> int:
    """Remove scratch directories whose owning process is gone (it was killed before it could clean up)."""
    removed = 0
    for path in Path(root or tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*-*"):
        owner = path.name[len(SCRATCH_PREFIX) :].split("-", 1)[0]
        if not owner.isdigit():
            continue
        try:
            os.kill(int(owner), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
        except PermissionError:  # alive, another user's
            pass
    return removed


if hasattr(asyncio, "timeout"):  # Python >= 3.11: no extra task per request

    async def _with_timeout(coro, timeout: float | None):
        async with asyncio.timeout(timeout):
            return await coro
else:

    async def _with_timeout(coro, timeout: float | None):
        return await asyncio.wait_for(coro, timeout)


class ReplProcess:
    """A started REPL: ``request`` sends one JSON request and returns the JSON answer.

    Failures raise ``ReplTimeout`` (no answer in time; the group is killed), ``ReplCrashed`` (exit,
    EOF, killed) or ``ReplProtocolError`` (an answer that is not a JSON object, or one too large).
    After any of them the process is dead and must be replaced.
    """

    def __init__(
        self,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        sandbox: sandbox_mod.Policy | str = "none",
        limits: dict[str, int] | None = None,
        scratch_root: str | None = None,
        max_response_bytes: int = 64 << 20,
        name: str = "repl",
        record: Callable[[dict[str, Any], bytes], None] | None = None,
    ):
        self.argv = list(argv)
        self.extra_env = dict(env or {})
        self.sandbox = sandbox
        self.limits = dict(limits or {})
        self.scratch_root = scratch_root
        self.max_response_bytes = max_response_bytes
        self.name = name
        self.scratch: Path | None = None
        self.proc: asyncio.subprocess.Process | None = None
        self.oom = False  # set by a memory watchdog before it kills the process
        self._tree: list[int] = []
        self._stderr_path: Path | None = None
        self.record = record  # called with each request and the raw answer (the self-test's golden files)
        self._confinement: sandbox_mod.Confinement | None = None
        self._tmpfs_at_start = (0, 0)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def _child_env(self) -> dict[str, str]:
        env = {"PATH": _BASE_PATH, "HOME": str(self.scratch), "TMPDIR": str(self.scratch), "LANG": "C.UTF-8"}
        env.update(self.extra_env)
        if "PATH" in self.extra_env:  # lake's PATH first (the toolchain), then the basics
            env["PATH"] = f"{self.extra_env['PATH']}:{_BASE_PATH}"
        return env

    async def start(self) -> None:
        try:
            self.scratch = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=self.scratch_root))
            self._stderr_path = self.scratch / "stderr.log"
            policy = (
                self.sandbox
                if isinstance(self.sandbox, sandbox_mod.Policy)
                else sandbox_mod.make_policy(self.sandbox, self.limits, self.argv, self.extra_env)
            )
            self._confinement = sandbox_mod.Confinement(policy, str(self.scratch))
            with open(self._stderr_path, "wb") as stderr:
                self.proc = await asyncio.create_subprocess_exec(
                    *self._confinement.command(self.argv),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=stderr,
                    env=self._child_env(),
                    cwd=self.scratch,
                    start_new_session=True,
                    limit=self.max_response_bytes,
                )
        except OSError as exc:
            if self._confinement:
                self._confinement.release()
            self._remove_scratch()
            raise ReplCrashed(f"could not start {self.argv[0]}: {exc}") from exc

    def stderr_tail(self, limit: int = 1500) -> str:
        try:
            with open(self._stderr_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - limit))
                return f.read().decode(errors="replace").strip()
        except (OSError, TypeError):
            return ""

    async def request(self, payload: dict[str, Any], timeout: float | None) -> dict[str, Any]:
        """Send ``payload``, return the answer; kill the process on any failure."""
        if not self.alive:
            raise ReplCrashed(f"{self.name} is not running", self.stderr_tail())
        try:
            raw = await _with_timeout(self._exchange(payload), timeout)
        except asyncio.TimeoutError:
            self.kill()
            raise ReplTimeout(f"no answer within {timeout:g} s") from None
        except asyncio.LimitOverrunError:
            self.kill()
            raise ReplProtocolError(f"answer larger than {self.max_response_bytes >> 20} MB") from None
        except (asyncio.IncompleteReadError, ConnectionError, BrokenPipeError) as exc:
            code = await self._reap(EXIT_GRACE)
            raise ReplCrashed(self._death_reason(code), self.stderr_tail()) from exc
        try:
            answer = json.loads(raw)
        except ValueError:
            self.kill()
            raise ReplProtocolError(f"unparsable answer: {raw[:200]!r}", self.stderr_tail()) from None
        if not isinstance(answer, dict):
            self.kill()
            raise ReplProtocolError(f"answer is not a JSON object: {raw[:200]!r}")
        return answer

    async def _exchange(self, payload: dict[str, Any]) -> bytes:
        self.proc.stdin.write(json.dumps(payload, ensure_ascii=False).encode() + b"\n\n")
        await self.proc.stdin.drain()
        while True:
            raw = await self.proc.stdout.readuntil(b"\n\n")
            if raw.strip():
                if self.record is not None:
                    self.record(payload, raw)
                return raw

    async def _reap(self, grace: float = 0.0) -> int | None:
        """Wait for the process to end, killing it now or after ``grace`` seconds; its exit code, or None."""
        if grace:
            try:
                return await _with_timeout(self.proc.wait(), grace)
            except asyncio.TimeoutError:
                pass
        self.kill()
        try:
            return await _with_timeout(self.proc.wait(), 5)
        except asyncio.TimeoutError:
            return None

    def _death_reason(self, code: int | None) -> str:
        if self.oom:
            return "killed by the memory watchdog"
        if code is not None and code < 0:
            return f"{self.name} died of signal {signal.Signals(-code).name}"
        return f"{self.name} exited (code {code})"

    def kill(self) -> None:
        """SIGKILL the REPL, its sandbox and everything they started (process group, descendants, cgroup)."""
        if self.proc is not None:
            self._confinement.kill(self.proc.pid if self.proc.returncode is None else None)

    async def close(self) -> None:
        """Kill, reap and remove the scratch directory. Safe to call twice."""
        if self.proc is not None:
            self.kill()
            await self._reap()
            self.proc.stdin.close()
            self.proc._transport.close()  # no public way; else its __del__ may run after the loop closed
        for _ in range(RELEASE_TRIES):
            if self._confinement is None or self._confinement.release():
                break
            await asyncio.sleep(0.01)
        else:
            logger.warning("%s: could not remove its cgroup %s", self.name, self._confinement.cgroup)
        self._remove_scratch()

    def _remove_scratch(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)

    def snapshot_tree(self) -> None:
        """Remember the process tree (launcher, sandbox, REPL) whose memory ``rss_mb`` adds up."""
        if not self.alive:
            return
        pids, frontier = [self.proc.pid], [self.proc.pid]
        while frontier:
            pid = frontier.pop()
            try:
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    children = [int(c) for c in f.read().split()]
            except OSError:
                children = []
            pids += children
            frontier += children
        self._tree = pids
        self._tmpfs_at_start = self._confinement.tmpfs_usage(pids)

    def memory_mb(self) -> float:
        """Resident memory of the process tree (snapshot taken by ``snapshot_tree``) plus what it keeps
        in its sandbox's RAM-backed /tmp, /dev/shm and /run, in MB."""
        return self.footprint()[0]

    def footprint(self) -> tuple[float, bool]:
        """``memory_mb``, and whether anything was written to the RAM-backed directories since the start."""
        total = 0
        for pid in self._tree or ([self.proc.pid] if self.proc else []):
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1])
            except (OSError, ValueError, IndexError):
                continue
        used, inodes = self._confinement.tmpfs_usage(self._tree) if self._confinement else (0, 0)
        wrote = used > self._tmpfs_at_start[0] or inodes > self._tmpfs_at_start[1]
        return (total * _PAGE + used) / (1 << 20), wrote
