"""One ``pids`` cgroup per REPL worker, where the machine lets this process make them (root, with a
cgroup v1 ``pids`` hierarchy or a cgroup v2 ``pids`` controller delegated to its own cgroup):
``pids.max`` bounds the worker's processes and threads whatever its uid, and what is left in the
group when the worker ends can be found and killed, even a daemon that left every process group.
"""

from __future__ import annotations

import functools
import itertools
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

logger = logging.getLogger(__name__)

PREFIX = "prover-"  # + the owning process's pid + "-" + a counter: a dead owner's groups can be found
_counter = itertools.count()


@functools.cache
def parent() -> str | None:
    """A directory where this process may create pids cgroups, or None."""
    if os.geteuid() != 0:
        return None
    try:
        with open("/proc/self/cgroup") as f:
            mine = [line.rstrip("\n").split(":", 2) for line in f]  # hierarchy id, controllers, path
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split() for line in f]
    except OSError:
        return None
    candidates = []
    for fields in mounts:  # mount id, parent, dev, root, mount point, ..., "-", fs type, source, options
        fstype, options = fields[fields.index("-") + 1], fields[-1].split(",")
        root, point = fields[3].rstrip("/"), fields[4]
        if fstype == "cgroup" and "pids" in options:
            paths = [path for _, ctl, path in mine if "pids" in ctl.split(",")]
        elif fstype == "cgroup2":
            paths = [path for hid, _, path in mine if hid == "0"]
        else:
            continue
        # A container sees its own cgroup as the mount's root: the path is relative to that.
        candidates += [point + (path[len(root) :] if root and path.startswith(root) else path) for path in paths]
    candidates = [c.rstrip("/") or "/" for c in candidates]
    return next((c for c in candidates if _can_hold_a_process(c)), None)


def _can_hold_a_process(where: str) -> bool:
    """Make a cgroup under ``where`` with a pids.max and move a process into it, as a worker's launcher
    will (cgroup v2 has pids.max only where the controller is delegated, and refuses processes in a
    cgroup that delegates controllers)."""
    probe = os.path.join(where, f"{PREFIX}{os.getpid()}-probe")
    try:
        os.mkdir(probe)
    except OSError:
        return False
    sleeper = subprocess.Popen(["sleep", "10"])
    try:
        with open(os.path.join(probe, "pids.max"), "w") as f:
            f.write("8")
        with open(os.path.join(probe, "cgroup.procs"), "w") as f:
            f.write(str(sleeper.pid))
        return True
    except OSError:
        return False
    finally:
        sleeper.kill()
        sleeper.wait()
        for _ in range(100):  # the kernel lets go of the group once the sleeper is fully gone
            try:
                os.rmdir(probe)
                break
            except OSError:
                time.sleep(0.01)


def make(where: str, max_pids: int) -> str:
    """A new cgroup for one worker under ``where``, holding at most ``max_pids`` tasks."""
    path = os.path.join(where, f"{PREFIX}{os.getpid()}-{next(_counter)}")
    os.mkdir(path)
    with open(os.path.join(path, "pids.max"), "w") as f:
        f.write(str(max_pids))
    return path


def _members(path: str) -> list[int]:
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def kill(path: str) -> None:
    """SIGKILL every process in the cgroup."""
    for pid in _members(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def remove(path: str) -> bool:
    """Kill what is left in the cgroup and remove it; False if the kernel still refuses (EBUSY while a
    member is dying)."""
    kill(path)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def sweep_stale(where: str) -> None:
    """Remove the cgroups of pools that died without cleaning up (killed by a signal they cannot catch)."""
    for entry in Path(where).glob(f"{PREFIX}*-*"):
        owner = entry.name[len(PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists() and not remove(str(entry)):
            logger.warning("could not remove the stale cgroup %s yet", entry)
