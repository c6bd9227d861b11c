"""The two steps that start a confined REPL worker, run as scripts with ``python -I -S`` (so: the
standard library only, and nothing imported from this package).

``launcher.py launch SPEC -- ARGV`` runs outside the sandbox: it joins the worker's cgroup, applies
the rlimits and PR_SET_PDEATHSIG (SIGKILL when the pool's thread or process dies, even by SIGKILL)
and execs ARGV, the sandbox. ``launcher.py init SPEC -- ARGV`` runs inside it: it becomes the
worker's own uid, applies RLIMIT_NPROC, sets no_new_privs and runs the REPL, as its parent when it
must reap (see ``init``). Doing this in freshly exec'd interpreters instead of a ``preexec_fn`` keeps
it safe in a threaded parent (a preexec_fn can deadlock after fork). ``sandbox.py`` writes the SPECs.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import signal
import sys

# rlimit name -> resource constant name; the values come from VerifierConfig (0 = leave as is).
RLIMITS = {
    "as": "RLIMIT_AS",
    "cpu": "RLIMIT_CPU",
    "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC",
    "fsize": "RLIMIT_FSIZE",
}
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 36, 38  # <linux/prctl.h>


def children(pid: int) -> list[int]:
    """The children of ``pid``, from every one of its threads."""
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


def _set_rlimit(which: int, value: int) -> None:
    """Soft and hard limit ``value``, or the hard limit if that is lower (only root may raise it)."""
    _, hard = resource.getrlimit(which)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(which, (value, value))


def launch(spec: dict, argv: list[str]) -> None:
    """Outside the sandbox: cgroup, rlimits, parent-death signal; then the sandbox (or the init)."""
    if spec.get("cgroup"):
        with open(os.path.join(spec["cgroup"], "cgroup.procs"), "w") as f:
            f.write(str(os.getpid()))
    for key, value in spec["limits"].items():
        if value:
            _set_rlimit(getattr(resource, RLIMITS[key]), value)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != spec["parent"]:  # the parent died before the signal was armed
        os._exit(1)
    if "init" in spec:
        init(spec["init"], argv)
    os.execvp(argv[0], argv)


def init(spec: dict, argv: list[str]) -> None:
    """Inside the sandbox: become the worker's uid, limit its processes, then run the REPL.

    RLIMIT_NPROC counts the processes of the caller's uid in its user namespace, and is ignored for
    root (kernel/fork.c, copy_process): set here, after the uid change and inside any user namespace
    bwrap or unshare made, it counts this worker's processes only.
    """
    if spec.get("uid") is not None:
        os.setgroups([])
        os.setgid(spec["uid"])
        os.setuid(spec["uid"])  # also clears every capability
    os.chdir(spec["cwd"])
    if spec.get("nproc"):
        _set_rlimit(resource.RLIMIT_NPROC, spec["nproc"])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)  # setuid programs cannot give root back
    if not spec.get("reaper"):
        os.execvp(argv[0], argv)
    # Process 1 of a pid namespace ignores the signals it sends itself (a REPL that kills itself
    # would live on), and without a namespace only a subreaper keeps a daemon's parentage: the REPL
    # runs as our child, and when it ends, everything it left behind ends with it.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
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
        for child in children(os.getpid()):
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
    (launch if stage == "launch" else init)(json.loads(spec_json), command)
