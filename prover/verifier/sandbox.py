"""Confinement of one REPL process: resource limits, death with the parent, and a namespace sandbox.

A worker is started as ``python -I -S sandbox.py LIMITS -- [bwrap ... --] repl ...``: this file, run
as a script, applies the rlimits and PR_SET_PDEATHSIG (SIGKILL when the pool's thread or process
dies, even by SIGKILL) and then execs the rest. Doing this in a freshly exec'd interpreter instead of
a ``preexec_fn`` keeps it safe in a threaded parent (a preexec_fn can deadlock after fork).

The sandbox around the REPL, when available:

* ``bwrap``: new pid, network, IPC and UTS namespaces; the whole filesystem read-only except the
  worker's scratch directory; fresh ``/tmp``, ``/run``, ``/dev`` and ``/proc``; no capabilities;
  killed with the pool (``--die-with-parent``), and the pid namespace takes every descendant with it.
* ``unshare``: new network and pid namespaces only (the filesystem stays writable).
* ``none``: rlimits, process group and parent-death signal only.

Only the standard library may be imported at module level: the launcher runs with ``-I -S``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys

SANDBOXES = ("bwrap", "unshare", "none")

# rlimit name -> resource constant name; the values come from VerifierConfig (0 = leave as is).
RLIMITS = {"as": "RLIMIT_AS", "cpu": "RLIMIT_CPU", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC",
           "fsize": "RLIMIT_FSIZE"}


def limits_from_config(config) -> dict[str, int]:
    """The rlimits of a worker, in bytes / seconds / counts."""
    mb = 1024 * 1024
    return {"as": config.address_space_mb * mb, "cpu": config.cpu_seconds, "nofile": config.max_open_files,
            "nproc": config.max_processes, "fsize": config.max_file_mb * mb}


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
    prefix = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
    return prefix if os.geteuid() == 0 else [*prefix[:1], "--user", "--map-root-user", *prefix[1:]]


def unshare_works() -> bool:
    return _works(*_unshare_prefix(), "true")


def resolve_sandbox(kind: str) -> str:
    """``auto`` -> the strongest sandbox that works here; an explicit kind that does not work -> ValueError."""
    if kind == "auto":
        return "bwrap" if bwrap_works() else "unshare" if unshare_works() else "none"
    if kind == "bwrap" and not bwrap_works():
        raise ValueError("sandbox=bwrap: bwrap is missing or cannot create namespaces here (apt-get install bubblewrap)")
    if kind == "unshare" and not unshare_works():
        raise ValueError("sandbox=unshare: unshare cannot create network/pid namespaces here")
    if kind not in SANDBOXES:
        raise ValueError(f"sandbox={kind!r}: choose auto, bwrap, unshare or none")
    return kind


def wrap(argv: list[str], kind: str, scratch: str) -> list[str]:
    """``argv`` inside the sandbox ``kind`` (already resolved) with ``scratch`` as its only writable place."""
    if kind == "bwrap":
        return ["bwrap", "--die-with-parent", "--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs", "/run",
                "--tmpfs", "/dev/shm", "--bind", scratch, scratch, "--chdir", scratch, "--cap-drop", "ALL",
                "--", *argv]
    if kind == "unshare":
        return [*_unshare_prefix(), "--", *argv]
    return list(argv)


def launcher_argv(argv: list[str], limits: dict[str, int]) -> list[str]:
    """The command that applies ``limits`` and the parent-death signal, then execs ``argv``."""
    spec = json.dumps({"limits": limits, "parent": os.getpid()})
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), spec, "--", *argv]


def _apply_and_exec(spec: dict, argv: list[str]) -> None:
    import ctypes
    import resource
    import signal

    for key, value in spec["limits"].items():
        if value:
            which = getattr(resource, RLIMITS[key])
            _, hard = resource.getrlimit(which)
            value = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(which, (value, value))
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != spec["parent"]:  # the parent died before the signal was armed
        os._exit(1)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    _apply_and_exec(json.loads(sys.argv[1]), sys.argv[3:])
