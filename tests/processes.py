"""Process helpers the verifier tests share: find the REPL doubles a test started, wait for conditions."""

from __future__ import annotations

import os
import time
from pathlib import Path


def tagged(tag: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line carries ``tag``."""
    pids = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if tag.encode() in cmdline and state != "Z":
            pids.append(int(entry))
    return pids


def wait_until(predicate, seconds: float, poll: float = 0.1) -> bool:
    """Whether ``predicate()`` became true within ``seconds``."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


def session(pid: int) -> int | None:
    """The session id of ``pid`` (a daemon leaves its parent's session), or None if it is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None
