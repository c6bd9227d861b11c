"""One job per run directory: a lock file that says who holds it.

Two jobs writing one run directory interleave its sample files and overwrite each other's
checkpoints. ``RunLock`` takes an exclusive ``flock`` on ``<run_dir>/.lock`` for the life of the
job and writes the holder (pid, host, start time, command) into it, so a second job can say who
holds the directory. The kernel drops an ``flock`` when its process dies, however it dies, so the
lock of a killed job is never stale: the next job takes it over and says so.

On a network filesystem whose ``flock`` is local to each host, two hosts could both take the
lock; the holder's host is recorded so that the message names it.
"""

from __future__ import annotations

import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class RunDirBusy(RuntimeError):
    """Another live job holds the run directory."""


def describe_holder(info: dict[str, Any]) -> str:
    """``pid 123 on host h since 2026-11-30T12:00:00+00:00 (python -m prover.train ...)``."""
    command = info.get("command") or " ".join(info.get("argv") or [])
    return f"pid {info.get('pid', '?')} on host {info.get('host', '?')} since {info.get('started', '?')}" + (
        f" ({command})" if command else ""
    )


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir`` for this process; raises ``RunDirBusy`` when another
    process holds it. Creates ``run_dir`` if needed."""

    def __init__(self, run_dir: str | Path, command: str | None = None):
        self.run_dir = Path(run_dir)
        self.command = command  # what the holder runs, as its user typed it (default: sys.argv)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                os.close(fd)
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                info = self._read()
                raise RunDirBusy(
                    f"{self.run_dir} is in use by another job: {describe_holder(info)}; wait for it "
                    "to finish or choose another --grpo.output_dir"
                ) from None
            # The holder before us may have deleted the file between our open and our flock: then we
            # hold a lock on a file nobody else can see, and must start over on the new one.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        self._fd = fd
        previous = self._read()
        if previous:  # a holder that released would have deleted the file: this one died holding it
            logger.warning(
                "taking over the stale lock of %s left by %s, which no longer runs",
                self.run_dir,
                describe_holder(previous),
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv,
            "command": self.command,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        return self

    def release(self) -> None:
        """Delete the lock file and drop the lock; safe to call twice."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # while still locked, so no one can lock the old file meanwhile
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text() or "{}")
        except (OSError, json.JSONDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
