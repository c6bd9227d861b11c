"""What each sandbox keeps a proof from doing: every attempt under every mode that works here, against
the table below, which docs/verifier.md shows word for word.

A cell is ``blocked``, ``open``, ``own uid`` (blocked when the worker runs under a uid of its own: the
pool runs as root and every path the REPL needs is readable by other users) or ``limit`` (blocked
where ``max_processes`` is enforced: a pids cgroup, the worker's own uid or its user namespace; the
pool warns where it is not). The REPL double runs from a directory under /tmp, outside the project,
with the system interpreter where there is one, so that the worker can take a uid of its own.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
import uuid
from pathlib import Path

import pytest
from processes import DOUBLE, needs, portable_python, tagged, wait_until

from prover.verifier import LeanPool, ProofRequest, Status, VerifierConfig

DOCS = Path(__file__).resolve().parents[1] / "docs" / "verifier.md"
KINDS = ("bwrap", "unshare", "none")
MATRIX = {
    "write outside scratch": ("blocked", "own uid", "own uid"),
    "read a world-readable file outside the binds": ("blocked", "open", "open"),
    "read a file only its owner may read": ("blocked", "own uid", "own uid"),
    "connect to loopback": ("blocked", "blocked", "open"),
    "fork past the limit": ("limit", "limit", "limit"),
    "daemon surviving close": ("blocked", "blocked", "blocked"),
    "fill /tmp": ("blocked", "open", "open"),
}


def render_matrix() -> str:
    lines = ["| a proof tries to | " + " | ".join(f"`{k}`" for k in KINDS) + " |", "| --- |" + " --- |" * len(KINDS)]
    lines += [f"| {attempt} | " + " | ".join(cells) + " |" for attempt, cells in MATRIX.items()]
    return "\n".join(lines)


def test_the_docs_show_this_table():
    assert render_matrix() in DOCS.read_text(), f"docs/verifier.md should show:\n{render_matrix()}"


@pytest.fixture
def outside():
    """Outside scratch, the project and pytest's private tree: the double's copy, and what it reaches for."""
    path = Path(tempfile.mkdtemp(prefix="prover-matrix-"))
    path.chmod(0o755)
    shutil.copy(DOUBLE, path / "repl_double.py")
    (path / "public.txt").write_text("anyone may read this")
    (path / "public.txt").chmod(0o644)
    (path / "private.txt").write_text("only its owner may read this")
    (path / "private.txt").chmod(0o600)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pool_for(kind: str, outside: Path, tag: str, **kw) -> LeanPool:
    command = [portable_python(), str(outside / "repl_double.py"), "--tag", tag]
    return LeanPool(VerifierConfig(repl_command=command, sandbox=kind, workers=1, timeout=20, start_timeout=20, **kw))


def check(pool: LeanPool, directives: str):
    return pool.check_batch(
        [ProofRequest("theorem t : 1 = 1 := by\n", f"  rfl -- {directives}", "import Mathlib", "t")]
    )[0]


def said(verdict, prefix: str) -> str:
    return next((m["data"] for m in verdict.messages if m["data"].startswith(prefix)), verdict.reason)


def attempt(name: str, pool: LeanPool, outside: Path, tag: str) -> bool:
    """Run one attempt on ``pool``; whether it was blocked."""
    if name == "write outside scratch":
        target = outside / "escaped.txt"
        check(pool, f"double:write={target}")
        return not target.exists()
    if name == "read a world-readable file outside the binds":
        return "failed" in said(check(pool, f"double:read={outside / 'public.txt'}"), "read")
    if name == "read a file only its owner may read":
        return "failed" in said(check(pool, f"double:read={outside / 'private.txt'}"), "read")
    if name == "connect to loopback":
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            return "failed" in said(check(pool, f"double:connect=127.0.0.1:{server.getsockname()[1]}"), "connect")
    if name == "fork past the limit":
        return "failed after" in said(check(pool, "double:fork=60"), "fork")
    if name == "daemon surviving close":
        assert check(pool, "double:daemon").proved
        pool.close()
        return wait_until(lambda: not tagged(tag), 10)
    if name == "fill /tmp":
        verdict = check(pool, "double:fill=8")
        written = said(verdict, "fill").rpartition("(")[2].rstrip(")")
        leaked = [Path(d, written) for d in ("/tmp", "/dev/shm") if written and Path(d, written).exists()]
        for path in leaked:
            path.unlink()
        return not leaked and not verdict.proved
    raise KeyError(name)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(MATRIX))
def test_what_each_sandbox_blocks(name, kind, outside):
    needs(kind)
    tag = uuid.uuid4().hex
    pool = pool_for(kind, outside, tag, max_processes=40, tmpfs_mb=4)
    try:
        policy = pool.stats()["sandbox"]
        cell = MATRIX[name][KINDS.index(kind)]
        expected = {
            "blocked": True,
            "open": False,
            "own uid": policy["worker_user"] == "own uid",
            "limit": not policy["process_limit"].startswith("not enforced"),
        }[cell]
        assert attempt(name, pool, outside, tag) is expected, (cell, policy)
    finally:
        pool.close()
    assert wait_until(lambda: not tagged(tag), 10)
    if name == "fill /tmp" and kind == "bwrap":  # bounded, and the next proof gets a fresh /tmp
        with pool_for(kind, outside, tag, tmpfs_mb=4) as again:
            assert check(again, "double:fill=2").proved
            assert check(again, "double:fill=3").status is Status.PROVED  # 3 MB more fits: the 2 MB are gone
