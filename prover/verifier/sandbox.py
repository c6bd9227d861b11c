"""Confinement of one REPL process: what it can read, write, reach and start, and who ends it.

A worker is started as ``python -I -S sandbox.py launch SPEC -- [bwrap|unshare ... --] python -I -S
sandbox.py init SPEC -- repl ...``. The **launcher** (outside) joins the worker's cgroup, applies the
rlimits and PR_SET_PDEATHSIG (SIGKILL when the pool's thread or process dies, even by SIGKILL) and
execs the sandbox. The **init** (inside) gives up root for the worker's own uid, applies
RLIMIT_NPROC (only now does it count per worker: see ``_init``), sets no_new_privs and, where it is
process 1 of a pid namespace (``unshare``) or the only one left to track descendants (``none``),
forks the REPL, reaps orphans and ends every descendant when the REPL ends. Doing this in freshly
exec'd interpreters instead of a ``preexec_fn`` keeps it safe in a threaded parent.

What each sandbox protects (docs/verifier.md has the tested table):

* ``bwrap``: new pid, network, IPC, UTS and cgroup namespaces; only what the REPL needs is bound,
  read-only: the system (``/usr``, a few files of ``/etc``), the REPL or ``repl_command``'s files, the
  Lean project, the toolchain, the interpreter of the init; the scratch directory is the one writable
  place besides ``/tmp``, ``/dev/shm`` and ``/run``, fresh tmpfs of ``tmpfs_mb`` each, whose use
  counts as the worker's memory. The pid namespace takes every descendant with it.
* ``unshare``: new network, pid and IPC namespaces; the filesystem is the host's.
* ``none``: rlimits, process group, parent-death signal, and the init as child subreaper.

In every mode, a pool running as root gives each worker a uid of its own (so that RLIMIT_NPROC
counts and file permissions apply) when every path the REPL needs is readable by other users, and a
``pids`` cgroup per worker with ``pids.max`` where the machine offers one.

Only the standard library may be imported at module level: the launcher runs with ``-I -S``.
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

logger = logging.getLogger(__name__)

SANDBOXES = ("bwrap", "unshare", "none")

# rlimit name -> resource constant name; the values come from VerifierConfig (0 = leave as is).
RLIMITS = {"as": "RLIMIT_AS", "cpu": "RLIMIT_CPU", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC",
           "fsize": "RLIMIT_FSIZE"}

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
CGROUP_PREFIX = "prover-"  # + the owning process's pid + "-" + a counter: a dead owner's groups can be found

MODES = {  # for run directories and stats: what each sandbox keeps from a proof
    "bwrap": "namespaces (pid, net, ipc, uts, cgroup); reads only the bound paths; writes only scratch and "
             "bounded, counted tmpfs",
    "unshare": "namespaces (pid, net, ipc); the host's filesystem, confined only by the worker's uid",
    "none": "no namespaces: the host's filesystem and network, confined only by the worker's uid",
}


def limits_from_config(config) -> dict[str, int]:
    """The rlimits of a worker, in bytes / seconds / counts."""
    mb = 1024 * 1024
    return {"as": config.address_space_mb * mb, "cpu": config.cpu_seconds, "nofile": config.max_open_files,
            "nproc": config.max_processes, "fsize": config.max_file_mb * mb}


# ---------------------------------------------------------------------------------------- which sandbox

@functools.lru_cache(maxsize=None)
def _works(*argv: str) -> bool:
    if not shutil.which(argv[0]):
        return False
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def bwrap_works() -> bool:
    """bwrap is installed and can build its namespaces here (containers may forbid them)."""
    return _works("bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid",
                  "--unshare-net", "--die-with-parent", "true")


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
            _warn_once(f"sandbox=auto: bwrap is missing or cannot create namespaces here, so REPL workers run "
                       f"under {resolved!r} ({MODES[resolved]}); install bubblewrap for a confined filesystem")
        return resolved
    if kind == "bwrap" and not bwrap_works():
        raise ValueError("sandbox=bwrap: bwrap is missing or cannot create namespaces here (apt-get install bubblewrap)")
    if kind == "unshare" and not unshare_works():
        raise ValueError("sandbox=unshare: unshare cannot create network/pid namespaces here")
    if kind not in SANDBOXES:
        raise ValueError(f"sandbox={kind!r}: choose auto, bwrap, unshare or none")
    return kind


@functools.lru_cache(maxsize=None)
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
    return {**record, "resolved": kind, "protects": MODES[kind], "pool_user": "root" if os.geteuid() == 0 else "other",
            "pids_cgroup": _pids_cgroup_parent() is not None}


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
        return {"sandbox": self.kind, "protects": MODES[self.kind],
                "worker_user": "own uid" if self.own_uid else "the pool's user" + (
                    " in a user namespace" if os.geteuid() != 0 and self.kind != "none" else ""),
                "process_limit": self._process_limit(), "tmpfs_mb": self.tmpfs_mb if self.kind == "bwrap" else None}

    def _process_limit(self) -> str:
        if not self.limits.get("nproc"):
            return "none"
        ways = ["cgroup pids.max"] if self.cgroup_parent else []
        if self.own_uid or os.geteuid() != 0:
            ways.append("RLIMIT_NPROC" + (" (every process of the pool's user)" if os.geteuid() != 0 and
                                          self.kind == "none" else ""))
        return " + ".join(ways) or "not enforced (root without its own uid or a pids cgroup)"


def policy_for(config, argv: list[str], env: dict[str, str]) -> Policy:
    """The policy of REPLs started as ``argv`` with ``env`` under ``config`` (a VerifierConfig);
    ValueError if the sandbox it asks for does not work here."""
    kind = resolve_sandbox(config.sandbox)
    project = config.resolved_lean_project() if not config.repl_command else None
    return make_policy(kind, limits_from_config(config), argv, env, project, config.tmpfs_mb)


def make_policy(kind: str, limits: dict[str, int], argv: list[str], env: dict[str, str],
                project: str | None = None, tmpfs_mb: int = 256) -> Policy:
    """The policy for REPLs started as ``argv`` with ``env``; ``kind`` is already resolved."""
    needed = _needed_paths(argv, env, project)
    own_uid = False
    if os.geteuid() == 0:
        blocked = [p for p in needed if not _others_can_read(p, through_parents=kind != "bwrap")]
        own_uid = not blocked
        if blocked:
            _warn_once(f"REPL workers run as root: {blocked[0]} (or a directory on the way to it) is not readable "
                       f"by other users, so they cannot run under a uid of their own")
    cgroup = _pids_cgroup_parent() if limits.get("nproc") else None
    if cgroup:
        _sweep_stale_cgroups(cgroup)
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
_cgroup_counter = itertools.count()


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
                self.cgroup = _make_cgroup(policy.cgroup_parent, policy.limits["nproc"])
        except BaseException:
            self.release()
            raise

    def command(self, argv: list[str]) -> list[str]:
        """The full command line: launcher, sandbox, init, then ``argv``."""
        kind = self.policy.kind
        init = {"uid": self.uid, "nproc": self.policy.limits.get("nproc", 0), "reaper": kind != "bwrap",
                "cwd": self.scratch}
        launch = {"parent": os.getpid(), "cgroup": self.cgroup,
                  "limits": {k: v for k, v in self.policy.limits.items() if k != "nproc"}}
        if kind == "none":  # no sandbox in between: the launcher goes on as the init
            return _python("launch", {**launch, "init": init}, argv)
        inner = _python("init", init, argv)
        outer = self._bwrap() if kind == "bwrap" else _unshare_prefix()
        return _python("launch", launch, [*outer, "--", *inner])

    def _bwrap(self) -> list[str]:
        args = ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--unshare-cgroup-try"]
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

    def kill(self, pid: int) -> None:
        """SIGKILL everything the worker started: its descendants (a daemon left its process group),
        the process group, and whatever is left in its cgroup."""
        kill_descendants(pid)
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.cgroup:
            _kill_cgroup(self.cgroup)

    def release(self) -> bool:
        """After the worker is dead: remove its cgroup, free its uid. False while the kernel still holds
        the cgroup (a member is dying): call again a little later. Safe to call twice."""
        if self.cgroup:
            if not _remove_cgroup(self.cgroup):
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
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), stage, json.dumps(spec), "--", *argv]


def _init_paths() -> tuple[str, ...]:
    """What the init inside bwrap needs: this file and the interpreter that runs it."""
    return tuple(p for p in dict.fromkeys((os.path.abspath(__file__), sys.executable, sys.base_prefix))
                 if not _under(p, ("/usr",)))


def _allocate_uid() -> int:
    first = UID_BASE + (os.getpid() % 4096) * UIDS_PER_POOL
    with _uid_lock:
        uid = next((u for u in range(first, first + UIDS_PER_POOL) if u not in _uids_in_use), first)
        _uids_in_use.add(uid)
    return uid


def _mount_ns(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids = []
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += [int(c) for c in f.read().split()]
        except OSError:
            continue
    return kids


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
            for child in _children(parent):
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


# ---------------------------------------------------------------------------------------- cgroups

@functools.lru_cache(maxsize=None)
def _pids_cgroup_parent() -> str | None:
    """A directory where this process may create pids cgroups (root, a v1 pids hierarchy or a v2
    cgroup with the pids controller delegated to its children), or None."""
    if os.geteuid() != 0:
        return None
    try:
        with open("/proc/self/cgroup") as f:
            mine = [line.rstrip("\n").split(":", 2) for line in f]
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    candidates = []
    for fields in mounts:
        sep = fields.index("-")
        fstype, options = fields[sep + 1], fields[-1].split(",")
        if fstype == "cgroup" and "pids" in options:
            candidates += [fields[4] + path for _, ctl, path in mine if "pids" in ctl.split(",")]
        elif fstype == "cgroup2":
            candidates += [fields[4] + path for hid, _, path in mine if hid == "0"]
    for parent in candidates:
        parent = parent.rstrip("/") or "/"
        v2 = os.path.exists(os.path.join(parent, "cgroup.subtree_control"))
        if v2:
            try:
                with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                    if "pids" not in f.read().split():
                        continue
            except OSError:
                continue
        probe = os.path.join(parent, f"{CGROUP_PREFIX}probe-{os.getpid()}")
        try:
            os.mkdir(probe)
            ok = os.path.exists(os.path.join(probe, "pids.max"))
            os.rmdir(probe)
        except OSError:
            continue
        if ok:
            return parent
    return None


def _make_cgroup(parent: str, max_pids: int) -> str:
    path = os.path.join(parent, f"{CGROUP_PREFIX}{os.getpid()}-{next(_cgroup_counter)}")
    os.mkdir(path)
    with open(os.path.join(path, "pids.max"), "w") as f:
        f.write(str(max_pids))
    return path


def _cgroup_pids(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def _kill_cgroup(path: str) -> None:
    for pid in _cgroup_pids(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _remove_cgroup(path: str) -> bool:
    """Kill what is left in the cgroup and remove it; False if the kernel still refuses (EBUSY while a
    member is dying)."""
    _kill_cgroup(path)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def _sweep_stale_cgroups(parent: str) -> None:
    """Remove the cgroups of pools that died without cleaning up (killed by a signal they cannot catch)."""
    for entry in Path(parent).glob(f"{CGROUP_PREFIX}*-*"):
        owner = entry.name[len(CGROUP_PREFIX):].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists() and not _remove_cgroup(str(entry)):
            logger.warning("could not remove the stale cgroup %s yet", entry)


# ---------------------------------------------------------------------------------------- the two stages

def _set_rlimit(resource, which: int, value: int) -> None:
    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def _launch(spec: dict, argv: list[str]) -> None:
    """Outside the sandbox: cgroup, rlimits, parent-death signal; then the sandbox (or the init)."""
    import ctypes
    import resource

    if spec.get("cgroup"):
        with open(os.path.join(spec["cgroup"], "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    for key, value in spec["limits"].items():
        if value:
            _set_rlimit(resource, getattr(resource, RLIMITS[key]), value)
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != spec["parent"]:  # the parent died before the signal was armed
        os._exit(1)
    if "init" in spec:
        _init(spec["init"], argv)
    os.execvp(argv[0], argv)


def _init(spec: dict, argv: list[str]) -> None:
    """Inside the sandbox: become the worker's uid, limit its processes, then run the REPL.

    RLIMIT_NPROC counts the processes of the caller's uid in its user namespace, and is ignored for
    root (kernel/fork.c, copy_process): set here, after the uid change and inside any user namespace
    bwrap or unshare made, it counts this worker's processes only.
    """
    import ctypes
    import resource

    if spec.get("uid") is not None:
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])  # also clears every capability
    os.chdir(spec["cwd"])
    if spec.get("nproc"):
        _set_rlimit(resource, resource.RLIMIT_NPROC, spec["nproc"])
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_no_new_privs, pr_set_child_subreaper = 38, 36
    libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0)  # setuid programs cannot give root back
    if not spec.get("reaper"):
        os.execvp(argv[0], argv)
    # Process 1 of a pid namespace ignores the signals it sends itself (a REPL that kills itself
    # would live on), and without a namespace only a subreaper keeps a daemon's parentage: the REPL
    # runs as our child, and when it ends, everything it left behind ends with it.
    libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0)
    repl = os.fork()
    if repl == 0:
        try:
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)  # the REPL's pipes close when the REPL does, not when we do
    os.dup2(devnull, 1)
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == repl:
            break
    while True:
        for child in _children(os.getpid()):
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            break
    if os.WIFSIGNALED(status) and os.getpid() != 1:  # die as the REPL died (process 1 cannot)
        if os.WTERMSIG(status) not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(os.WTERMSIG(status), signal.SIG_DFL)
        os.kill(os.getpid(), os.WTERMSIG(status))
    os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


if __name__ == "__main__":
    stage, spec_json, _, *command = sys.argv[1:]
    (_launch if stage == "launch" else _init)(json.loads(spec_json), command)
