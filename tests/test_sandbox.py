"""The confinement of each REPL worker (prover/verifier/sandbox.py), on the REPL double's sandbox probes:
a REPL that kills itself, reads outside its binds, forks past its limit, leaves a daemon, fills /tmp;
the paths it needs wherever they live (/tmp included); the sandbox that ran, warned and recorded."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from processes import DOUBLE, needs, portable_python, session, tagged, wait_until

from prover.verifier import LeanPool, ProofRequest, Status, VerifierConfig
from prover.verifier import sandbox as sandbox_mod

HEADER = "import Mathlib\n"
STATEMENT = "theorem t (a b : ℝ) (h : a = b) : b = a := by\n"


def config(kind: str, tag: str = "", python: str | None = None, **kw) -> VerifierConfig:
    command = [python or sys.executable, DOUBLE] + (["--tag", tag] if tag else [])
    return VerifierConfig(
        repl_command=command, sandbox=kind, **{"workers": 1, "timeout": 10.0, "start_timeout": 20.0, **kw}
    )


def request(proof: str) -> ProofRequest:
    return ProofRequest(statement=STATEMENT, proof=proof, header=HEADER, name="t")


def check(pool: LeanPool, proof: str):
    return pool.check_batch([request(proof)])[0]


def texts(verdict) -> list[str]:
    return [m["data"] for m in verdict.messages]


def worker_pids(pool: LeanPool) -> set[int]:
    return {w.repl.pid for q in pool._idle.values() for w in q} | {w.repl.pid for w in pool._busy}


@pytest.fixture
def outside():
    """A world-traversable directory outside /tmp's pytest tree and outside every bind (cleaned up after)."""
    path = Path(tempfile.mkdtemp(prefix="prover-sandbox-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------------------------------- item 1


@pytest.mark.parametrize("kind", sandbox_mod.SANDBOXES)
def test_a_repl_that_kills_itself_is_never_proved(kind):
    """Under unshare the REPL used to be process 1 of its pid namespace, which ignores its own SIGKILL."""
    needs(kind)
    with LeanPool(config(kind)) as pool:
        verdict = check(pool, "  linarith -- double:sigkill")
    assert verdict.status is Status.ERROR and verdict.check == "infra", verdict


# ---------------------------------------------------------------------------------------- item 3


def test_bwrap_binds_only_what_the_repl_needs(outside):
    needs("bwrap")
    secret = outside / "secret.txt"
    secret.write_text("not for proofs")
    secret.chmod(0o644)  # world-readable: only the binds keep it out
    with LeanPool(config("bwrap")) as pool:
        verdict = check(pool, f"  linarith -- double:read={secret} double:read=/etc/passwd double:read={DOUBLE}")
    assert f"read {secret}: failed" in " ".join(texts(verdict)), texts(verdict)
    assert "read /etc/passwd: failed" in " ".join(texts(verdict))
    assert f"read {DOUBLE}: ok" in " ".join(texts(verdict))  # what it runs is there


@pytest.mark.skipif(os.geteuid() != 0, reason="a worker gets a uid of its own only when the pool runs as root")
@pytest.mark.parametrize("kind", sandbox_mod.SANDBOXES)
def test_workers_run_under_a_uid_of_their_own(kind, outside):
    needs(kind)
    private = outside / "private.txt"
    private.write_text("root only")
    private.chmod(0o600)
    python = portable_python()
    if kind != "bwrap" and python == sys.executable:
        pytest.skip("no interpreter here that other users may run: without bwrap the worker stays root")
    with LeanPool(config(kind, python=python)) as pool:
        assert pool.stats()["sandbox"]["worker_user"] == "own uid"
        verdict = check(
            pool, f"  linarith -- double:read=/proc/self/status double:write={outside}/x double:read={private}"
        )
    status = texts(verdict)[0]
    uid = int(re.search(r"Uid:\s+(\d+)", status).group(1))
    assert uid >= sandbox_mod.UID_BASE, status
    assert f"write {outside}/x: failed" in texts(verdict)[1] and not (outside / "x").exists()
    assert f"read {private}: failed" in texts(verdict)[2]


def test_a_worker_stays_root_when_what_it_runs_is_private(tmp_path, caplog):
    """A path other users cannot reach (here: under a 0700 directory) would break the REPL under another
    uid: then it runs as the pool's user, with a warning that says why."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    script = private / "repl_double.py"
    shutil.copy(DOUBLE, script)
    sandbox_mod._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="prover.verifier.sandbox"):
        policy = sandbox_mod.make_policy("none", {"nproc": 0}, [sys.executable, str(script)], {})
    if os.geteuid() == 0:
        assert not policy.own_uid and "not readable by other users" in caplog.text
    else:
        assert not policy.own_uid


# ---------------------------------------------------------------------------------------- item 4


@pytest.mark.parametrize("kind", sandbox_mod.SANDBOXES)
def test_max_processes_stops_a_fork_bomb(kind):
    needs(kind)
    tag = uuid.uuid4().hex
    with LeanPool(config(kind, tag, max_processes=40)) as pool:
        if pool.stats()["sandbox"]["process_limit"].startswith("not enforced"):
            pytest.skip("root without a uid of its own or a pids cgroup: the limit cannot be enforced here")
        bomb, after = pool.check_batch([request("  linarith -- double:fork=60"), request("  linarith -- after")])
    assert bomb.status is Status.REJECTED and "fork 60: failed after" in bomb.reason, bomb
    assert after.proved
    assert wait_until(lambda: not tagged(tag), 10)


# ---------------------------------------------------------------------------------------- item 6


@pytest.mark.parametrize("kind", sandbox_mod.SANDBOXES)
def test_close_ends_a_daemon(kind):
    """A daemon (fork, setsid, fork) leaves the REPL's process group; close() still ends it."""
    needs(kind)
    tag = uuid.uuid4().hex
    pool = LeanPool(config(kind, tag))
    try:
        assert check(pool, "  linarith -- double:daemon").proved
        (worker,) = worker_pids(pool)
        assert [p for p in tagged(tag) if session(p) != worker], "no daemon outside the worker's session"
    finally:
        pool.close()
    assert wait_until(lambda: not tagged(tag), 10), tagged(tag)


# ---------------------------------------------------------------------------------------- item 7


def test_tmpfs_is_bounded():
    needs("bwrap")
    with LeanPool(config("bwrap", tmpfs_mb=4)) as pool:
        verdict = check(pool, "  linarith -- double:fill=8")
    assert verdict.status is Status.REJECTED and "failed in /tmp after 4 MB" in verdict.reason, verdict


def test_tmpfs_counts_against_the_memory_limit():
    needs("bwrap")
    with LeanPool(config("bwrap", tmpfs_mb=64, check_memory_mb=100)) as pool:
        assert check(pool, "  linarith -- warm").proved
        (worker,) = [w for q in pool._idle.values() for w in q]
        footprint = worker.repl.memory_mb()
        assert footprint < 50, f"the double's tree takes {footprint:.0f} MB: the margin below is too small"
        verdict = check(pool, "  linarith -- double:fill=50")  # 100 MB in /tmp and /dev/shm, within tmpfs_mb each
    assert verdict.status is Status.TIMEOUT and verdict.check == "memory", verdict


def test_a_check_that_wrote_to_tmpfs_gets_a_fresh_worker():
    needs("bwrap")
    with LeanPool(config("bwrap")) as pool:
        check(pool, "  linarith -- first")
        first = worker_pids(pool)
        check(pool, "  linarith -- second")
        assert worker_pids(pool) == first  # a check that writes nothing keeps its worker
        assert check(pool, "  linarith -- double:fill=1").proved
        assert wait_until(lambda: worker_pids(pool) and worker_pids(pool).isdisjoint(first), 10)


# ---------------------------------------------------------------------------------------- item 8


def test_auto_warns_when_it_falls_back(monkeypatch, caplog):
    monkeypatch.setattr(sandbox_mod, "bwrap_works", lambda: False)
    sandbox_mod._warn_once.cache_clear()
    with caplog.at_level(logging.WARNING, logger="prover.verifier.sandbox"):
        kind = sandbox_mod.resolve_sandbox("auto")
    assert kind in ("unshare", "none")
    assert "bwrap is missing" in caplog.text and kind in caplog.text


@dataclass
class RunConfig:
    verifier: VerifierConfig = field(default_factory=VerifierConfig)


def test_every_run_directory_records_the_sandbox(tmp_path):
    from prover.runinfo import write_run_info

    info = json.loads(write_run_info(tmp_path, RunConfig()).read_text())
    assert info["sandbox"]["requested"] == "auto"
    assert info["sandbox"]["resolved"] == sandbox_mod.resolve_sandbox("auto")
    assert info["sandbox"]["protects"] == sandbox_mod.MODES[info["sandbox"]["resolved"]]


# ---------------------------------------------------------------------------------------- paths (issue 14)


def test_a_repl_command_under_tmp_is_bound(tmp_path):
    """bwrap mounts a fresh /tmp: a repl_command (or a project, a clone of this repository) under /tmp
    must be bound into it, or the worker cannot start."""
    needs("bwrap")
    script = tmp_path / "repl_double.py"
    shutil.copy(DOUBLE, script)
    cfg = VerifierConfig(repl_command=[sys.executable, str(script)], sandbox="bwrap", workers=1, start_timeout=20)
    with LeanPool(cfg) as pool:
        assert check(pool, "  linarith").proved


def test_the_lean_project_and_toolchain_under_tmp_are_bound(tmp_path, monkeypatch):
    """The REPL of a Lean project, its build (LEAN_PATH) and its toolchain (LEAN_SYSROOT), all under /tmp:
    the REPL starts and can read them inside bwrap."""
    needs("bwrap")
    from prover.verifier import lean_project

    project, toolchain = tmp_path / "project", tmp_path / "elan" / "toolchains" / "v4.9.0"
    (project / "lakefile.lean").parent.mkdir(parents=True)
    (project / "lakefile.lean").write_text("-- a Lake project\n")
    repl = project / lean_project.REPL_RELPATH
    repl.parent.mkdir(parents=True)
    shutil.copy(DOUBLE, repl.with_name("repl_double.py"))
    repl.write_text(f"#!/bin/sh\nexec {sys.executable} {repl.with_name('repl_double.py')}\n")
    repl.chmod(0o755)
    build = project / ".lake" / "build" / "lib"
    (build / "Mathlib.olean").parent.mkdir(parents=True)
    (build / "Mathlib.olean").write_text("olean")
    (toolchain / "lib" / "lean").mkdir(parents=True)
    (toolchain / "lib" / "lean" / "Init.olean").write_text("olean")
    env = {"LEAN_PATH": f"{build}:{toolchain}/lib/lean", "LEAN_SYSROOT": str(toolchain)}
    monkeypatch.setattr(lean_project, "lean_env", lambda project: env)
    cfg = VerifierConfig(lean_project=str(project), sandbox="bwrap", workers=1, start_timeout=20)
    with LeanPool(cfg) as pool:
        verdict = check(
            pool, f"  linarith -- double:read={build}/Mathlib.olean double:read={toolchain}/lib/lean/Init.olean"
        )
    assert verdict.proved and all(": ok: olean" in t for t in texts(verdict)), texts(verdict)
