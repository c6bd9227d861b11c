"""Confinement of one REPL process: what it can read, write, reach and start, and who ends it.

A worker is started as ``python -I -S launcher.py launch SPEC -- [bwrap|unshare ... --] python -I -S
launcher.py init SPEC -- repl ...`` (``launcher.py`` says what the two steps do); this module decides
which sandbox, writes the command line, and kills and cleans up after the worker.

* ``bwrap``: new pid, network, IPC, UTS and cgroup namespaces; only what the REPL needs is bound,
  read-only: the system (``/usr``, a few files of ``/etc``), the REPL or ``repl_command``'s files and
  the installation they belong to, the Lean project, the toolchain, the init's interpreter; the
  scratch directory is the one writable place besides ``/tmp``, ``/dev/shm`` and ``/run``, fresh tmpfs
  of ``tmpfs_mb`` each, whose use counts as the worker's memory. The pid namespace takes every
  descendant with it.
* ``unshare``: new network, pid and IPC namespaces; the filesystem is the host's. The init is
  process 1 of the pid namespace.
* ``none``: rlimits, process group, parent-death signal, and the init as child subreaper.

In every mode, a pool running as root gives each worker a uid of its own (so that RLIMIT_NPROC
counts and file permissions apply) when every path the REPL needs is readable by other users, and a
``pids`` cgroup per worker with ``pids.max`` where the machine offers one (``cgroups.py``).
docs/verifier.md has the table of what each mode blocks, as tests/test_sandbox_matrix.py checks it.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from prover.verifier import cgroups, launcher

logger = logging.getLogger(__name__)

SANDBOXES = ("bwrap", "unshare", "none")

# Workers' own uids (and gids) when the pool runs as root: far above real users (< 60000) and the
# subordinate ranges of rootless containers (100000 + 65536 per user), 256 per pool, keyed by the
# pool's pid so that two pools on one machine rarely share a uid (and with it an RLIMIT_NPROC count).
UID_BASE = 1 << 30
UIDS_PER_POOL = 256

TMPFS_DIRS = ("/tmp", "/dev/shm", "/run")  # RAM-backed and writable inside bwrap: bounded and counted
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What the dynamic loader and libc read in /etc; the rest of it (shadow, ssh keys, ...) stays out.
ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/alternatives")
LEAN_PATH_VARS = ("LEAN_SYSROOT", "LEAN_PATH", "LD_LIBRARY_PATH")  # the toolchain and the project's build

MODES = {  # for run directories and stats: what each sandbox keeps from a proof
    "bwrap": "namespaces (pid, net, ipc, uts, cgroup); reads only the bound paths; writes only scratch and "
    "bounded, counted tmpfs",
    "unshare": "namespaces (pid, net, ipc); the host's filesystem, confined only by the worker's uid",
    "none": "no namespaces: the host's filesystem and network, confined only by the worker's uid",
}


def limits_from_config(config) -> dict[str, int]:
    """The rlimits of a worker, in bytes / seconds / counts."""
    mb = 1024 * 1024
    return {
        "as": config.address_space_mb * mb,
        "cpu": config.cpu_seconds,
        "nofile": config.max_open_files,
        "nproc": config.max_processes,
        "fsize": config.max_file_mb * mb,
    }


# ---------------------------------------------------------------------------------------- which sandbox


@functools.cache
def _works(*argv: str) -> bool:
    if not shutil.which(argv[0]):
        return False
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def bwrap_works() -> bool:
    """bwrap is installed and can build its namespaces here (containers may forbid them)."""
    return _works(
        "bwrap",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--unshare-pid",
        "--unshare-net",
        "--die-with-parent",
        "true",
    )


def _unshare_prefix() -> list[str]:
    prefix = ["unshare", "--net", "--pid", "--ipc", "--fork", "--kill-child", "--mount-proc"]
    return prefix if os.geteuid() == 0 else [*prefix[:1], "--user", "--map-root-user", *prefix[1:]]


def unshare_works() -> bool:
    return _works(*_unshare_prefix(), "true")


def resolve_sandbox(kind: str) -> str:
    """``auto`` -> the strongest sandbox that works here (with a warning when that is not bwrap);
    an explicit kind that does not work -> ValueError."""
    if kind == "auto":
        resolved = "bwrap" if bwrap_works() else "unshare" if unshare_works() else "none"
        if resolved != "bwrap":
            _warn_once(
                f"sandbox=auto: bwrap is missing or cannot create namespaces here, so REPL workers run "
                f"under {resolved!r} ({MODES[resolved]}); install bubblewrap for a confined filesystem"
            )
        return resolved
    if kind == "bwrap" and not bwrap_works():
        raise ValueError(
            "sandbox=bwrap: bwrap is missing or cannot create namespaces here (apt-get install bubblewrap)"
        )
    if kind == "unshare" and not unshare_works():
        raise ValueError("sandbox=unshare: unshare cannot create network/pid namespaces here")
    if kind not in SANDBOXES:
        raise ValueError(f"sandbox={kind!r}: choose auto, bwrap, unshare or none")
    return kind


@functools.cache
def _warn_once(message: str) -> None:
    logger.warning(message)


def describe(config) -> dict:
    """What a verifier built from ``config`` runs in, for run directories: the sandbox ``auto`` resolves
    to here (the pool calls the same cached resolution) and what it protects."""
    record = {"requested": config.sandbox, "backend": config.backend}
    if config.backend == "ray":
        record["resolved"] = "on each Ray actor's node (see its log)"
        return record
    try:
        kind = resolve_sandbox(config.sandbox)
    except ValueError as exc:
        return {**record, "error": str(exc)}
    return {
        **record,
        "resolved": kind,
        "protects": MODES[kind],
        "pool_user": "root" if os.geteuid() == 0 else "other",
        "pids_cgroup": cgroups.parent() is not None,
    }


# ---------------------------------------------------------------------------------------- the policy


@dataclass(frozen=True)
class Policy:
    """How every worker of a pool is confined (built once per pool by ``make_policy``)."""

    kind: str
    limits: dict[str, int] = field(default_factory=dict)
    read_paths: tuple[str, ...] = ()  # bound read-only into bwrap
    own_uid: bool = False  # each worker runs as a uid of its own (the pool runs as root)
    cgroup_parent: str | None = None  # a writable pids cgroup: one child with pids.max per worker
    tmpfs_mb: int = 256

    def describe(self) -> dict:
        return {
            "sandbox": self.kind,
            "protects": MODES[self.kind],
            "worker_user": "own uid"
            if self.own_uid
            else "the pool's user" + (" in a user namespace" if os.geteuid() != 0 and self.kind != "none" else ""),
            "process_limit": self._process_limit(),
            "tmpfs_mb": self.tmpfs_mb if self.kind == "bwrap" else None,
        }

    def _process_limit(self) -> str:
        if not self.limits.get("nproc"):
            return "none"
        ways = ["cgroup pids.max"] if self.cgroup_parent else []
        if self.own_uid or os.geteuid() != 0:
            ways.append(
                "RLIMIT_NPROC"
                + (" (every process of the pool's user)" if os.geteuid() != 0 and self.kind == "none" else "")
            )
        return " + ".join(ways) or "not enforced (root without its own uid or a pids cgroup)"


def policy_for(config, argv: list[str], env: dict[str, str]) -> Policy:
    """The policy of REPLs started as ``argv`` with ``env`` under ``config`` (a VerifierConfig);
    ValueError if the sandbox it asks for does not work here."""
    kind = resolve_sandbox(config.sandbox)
    project = config.resolved_lean_project() if not config.repl_command else None
    return make_policy(kind, limits_from_config(config), argv, env, project, config.tmpfs_mb)


def make_policy(
    kind: str,
    limits: dict[str, int],
    argv: list[str],
    env: dict[str, str],
    project: str | None = None,
    tmpfs_mb: int = 256,
) -> Policy:
    """The policy for REPLs started as ``argv`` with ``env``; ``kind`` is already resolved."""
    needed = _needed_paths(argv, env, project)
    own_uid = False
    if os.geteuid() == 0:
        blocked = [p for p in needed if not _others_can_read(p, through_parents=kind != "bwrap")]
        own_uid = not blocked
        if blocked:
            _warn_once(
                f"REPL workers run as root: {blocked[0]} (or a directory on the way to it) is not readable "
                f"by other users, so they cannot run under a uid of their own"
            )
    cgroup = cgroups.parent() if limits.get("nproc") else None
    if cgroup:
        cgroups.sweep_stale(cgroup)
    policy = Policy(kind, dict(limits), tuple(needed), own_uid, cgroup, tmpfs_mb)
    if limits.get("nproc") and policy._process_limit().startswith("not enforced"):
        _warn_once("max_processes is not enforced: REPL workers run as root and this machine offers no pids cgroup")
    return policy


def _needed_paths(argv: list[str], env: dict[str, str], project: str | None) -> list[str]:
    """What the REPL reads: its executable and the installation it belongs to, the files of its command
    line, the Lean project, the toolchain and build directories of its environment."""
    paths = []
    exe = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH") or os.defpath)
    if exe:
        paths.append(os.path.abspath(exe))
        real = Path(exe).resolve()
        if real.parent.name == "bin":  # an interpreter's or toolchain's install: lib/ beside bin/
            paths.append(str(real.parent.parent))
    paths += [a for a in argv[1:] if a.startswith("/") and os.path.exists(a)]
    if project:
        paths.append(str(Path(project).resolve()))
    for var in LEAN_PATH_VARS:
        paths += [p for p in env.get(var, "").split(":") if p.startswith("/") and os.path.exists(p)]
    return [p for p in dict.fromkeys(paths) if not _under(p, ("/usr",))]


def _under(path: str, roots) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _others_can_read(path: str, through_parents: bool) -> bool:
    """Whether a user other than the owner can read ``path`` (and, if asked, reach it): the check a
    worker under its own uid would pass. bwrap recreates the parents of a bound path (0755)."""
    try:
        st = os.stat(path)
    except OSError:
        return False
    need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(st.st_mode) or st.st_mode & stat.S_IXUSR else 0)
    if st.st_mode & need != need:
        return False
    if through_parents:
        for chain in {Path(os.path.abspath(path)), Path(path).resolve()}:
            for parent in chain.parents:
                try:
                    if not os.stat(parent).st_mode & stat.S_IXOTH:
                        return False
                except OSError:
                    return False
    return True


# ---------------------------------------------------------------------------------------- one worker

_uid_lock = threading.Lock()
_uids_in_use: set[int] = set()
_uid_turn = itertools.count()


class Confinement:
    """One worker's share of a policy: its uid, its cgroup, its command line; ``kill`` and ``release``."""

    def __init__(self, policy: Policy, scratch: str):
        self.policy = policy
        self.scratch = scratch
        self.uid = _allocate_uid() if policy.own_uid else None
        self.cgroup: str | None = None
        self._inner: int | None = None  # a process inside the sandbox's mount namespace
        try:
            if self.uid is not None:
                os.chown(scratch, self.uid, self.uid)
            if policy.cgroup_parent:
                self.cgroup = cgroups.make(policy.cgroup_parent, policy.limits["nproc"])
        except BaseException:
            self.release()
            raise

    def command(self, argv: list[str]) -> list[str]:
        """The full command line: launcher, sandbox, init, then ``argv``."""
        kind = self.policy.kind
        init = {
            "uid": self.uid,
            "nproc": self.policy.limits.get("nproc", 0),
            "reaper": kind != "bwrap",
            "cwd": self.scratch,
        }
        launch = {
            "parent": os.getpid(),
            "cgroup": self.cgroup,
            "limits": {k: v for k, v in self.policy.limits.items() if k != "nproc"},
        }
        if kind == "none":  # no sandbox in between: the launcher goes on as the init
            return _python("launch", {**launch, "init": init}, argv)
        inner = _python("init", init, argv)
        outer = self._bwrap() if kind == "bwrap" else _unshare_prefix()
        return _python("launch", launch, [*outer, "--", *inner])

    def _bwrap(self) -> list[str]:
        args = [
            "bwrap",
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-net",
            "--unshare-ipc",
            "--unshare-uts",
            "--unshare-cgroup-try",
        ]
        for path in SYSTEM_DIRS:
            if os.path.islink(path):
                args += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                args += ["--ro-bind", path, path]
        args += ["--dev", "/dev", "--proc", "/proc"]
        size = str(self.policy.tmpfs_mb << 20)
        for path in TMPFS_DIRS:
            args += ["--size", size, "--perms", "0755" if path == "/run" else "1777", "--tmpfs", path]
        read = tuple(f for f in ETC_FILES if os.path.exists(f)) + self.policy.read_paths + _init_paths()
        binds = dict([(p, "--ro-bind") for p in read] + [(self.scratch, "--bind")])
        # bwrap would create the parents of a bound path 0700, which the worker's uid cannot cross.
        parents = {str(d) for path in binds for d in Path(path).parents} - {"/", "/dev", "/proc", *TMPFS_DIRS}
        for parent in sorted(parents, key=lambda d: d.count("/")):
            args += ["--perms", "0755", "--dir", parent]
        # Parents before children, so that a nested path is bound over its parent, not hidden by it.
        read_only: list[str] = []
        for path, how in sorted(binds.items(), key=lambda item: item[0].count("/")):
            if how == "--ro-bind":
                if _under(path, read_only):  # already visible through its parent
                    continue
                read_only.append(path)
            args += [how, path, path]
        args += ["--remount-ro", "/", "--cap-drop", "ALL"]  # the init enters scratch (it is the worker's, 0700)
        if self.uid is not None:  # the init needs these two to become the worker's uid; it then has none
            args += ["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        return args

    def kill(self, pid: int | None) -> None:
        """SIGKILL everything the worker started: the descendants of ``pid`` (a daemon left its process
        group), its process group, and whatever is left in its cgroup. ``pid`` None: it is reaped
        already (its number may be someone else's now), only the cgroup is left to empty."""
        if pid is not None:
            kill_descendants(pid)
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.cgroup:
            cgroups.kill(self.cgroup)

    def release(self) -> bool:
        """After the worker is dead: remove its cgroup, free its uid. False while the kernel still holds
        the cgroup (a member is dying): call again a little later. Safe to call twice."""
        if self.cgroup:
            if not cgroups.remove(self.cgroup):
                return False
            self.cgroup = None
        if self.uid is not None:
            with _uid_lock:
                _uids_in_use.discard(self.uid)
            self.uid = None
        return True

    def tmpfs_usage(self, pids: list[int]) -> tuple[int, int]:
        """Bytes and inodes in use in the sandbox's own /tmp, /dev/shm and /run (0, 0 outside bwrap)."""
        if self.policy.kind != "bwrap":
            return 0, 0
        if self._inner is None:
            mine = _mount_ns(os.getpid())
            self._inner = next((p for p in reversed(pids) if _mount_ns(p) not in (None, mine)), None)
        used = inodes = 0
        for path in TMPFS_DIRS:
            try:
                st = os.statvfs(f"/proc/{self._inner}/root{path}")
            except (OSError, TypeError):
                continue
            used += (st.f_blocks - st.f_bfree) * st.f_frsize
            inodes += st.f_files - st.f_ffree
        return used, inodes


def _python(stage: str, spec: dict, argv: list[str]) -> list[str]:
    return [sys.executable, "-I", "-S", os.path.abspath(launcher.__file__), stage, json.dumps(spec), "--", *argv]


def _init_paths() -> tuple[str, ...]:
    """What the init inside bwrap needs: the launcher and the interpreter that runs it."""
    return tuple(
        p
        for p in dict.fromkeys((os.path.abspath(launcher.__file__), sys.executable, sys.base_prefix))
        if not _under(p, ("/usr",))
    )


def _allocate_uid() -> int:
    """The next of this process's uids in turn, skipping those in use. In turn, not the lowest free: the
    processes of a worker just killed count against RLIMIT_NPROC until they are reaped, and a worker
    that took its uid over at once could not start (seen after a fork bomb)."""
    first = UID_BASE + (os.getpid() % 4096) * UIDS_PER_POOL
    with _uid_lock:
        for _ in range(UIDS_PER_POOL):
            uid = first + next(_uid_turn) % UIDS_PER_POOL
            if uid not in _uids_in_use:
                break
        _uids_in_use.add(uid)
    return uid


def _mount_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], int(fields[1])


def kill_descendants(pid: int, rounds: int = 50) -> None:
    """SIGKILL every live descendant of ``pid`` (not ``pid`` itself), until none is left.

    Orphans of the killed are reparented to the nearest subreaper, the init, which stays alive until
    the caller kills it, so they turn up in the next round. A pid is killed only while /proc still
    names its parent as one of the tree, which keeps a reused pid safe.
    """
    for _ in range(rounds):
        found = []
        frontier = [pid]
        while frontier:
            parent = frontier.pop()
            for child in launcher.children(parent):
                info = _state_and_parent(child)
                if info and info[1] == parent:
                    frontier.append(child)
                    if info[0] != "Z":
                        found.append(child)
        if not found:
            return
        for child in found:
            try:
                os.kill(child, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.001)  # let the init reap them before the next look
