"""Process helpers the verifier tests share: find the REPL doubles a test started, wait for conditions,
skip a sandbox this machine cannot build, pick an interpreter any uid may run."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

from prover.verifier import sandbox as sandbox_mod

DOUBLE = str(Path(__file__).with_name("repl_double.py"))


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


def needs(kind: str) -> None:
    """Skip unless the sandbox ``kind`` can create its namespaces here."""
    import pytest  # only tests call this; scripts/bench_verifier.py imports this file too

    works = {"bwrap": sandbox_mod.bwrap_works, "unshare": sandbox_mod.unshare_works, "none": lambda: True}[kind]
    if not works():
        pytest.skip(f"sandbox={kind} cannot create its namespaces on this machine")


def portable_python() -> str:
    """An interpreter every user may run (the system one), so that a worker can drop to a uid of its own
    even without bwrap; else this one (which may be readable by its owner only)."""
    system = shutil.which("python3", path="/usr/bin:/bin")
    return system if system and sandbox_mod._others_can_read(system, through_parents=True) else sys.executable
