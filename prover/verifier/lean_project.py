"""Find the Lean project and the command that starts one REPL in it.

The REPL needs the search path that ``lake env`` computes (LEAN_PATH and friends). Running
``lake env`` for every worker is slow and can make Lake resolve or clone dependencies at start,
racing with other workers on ``.lake``; so the environment is resolved once per project and kept in
``.lake/prover-env.json`` (refreshed when ``lake-manifest.json`` or ``lean-toolchain`` changes), and
workers start the REPL binary directly.

``lake env`` before lean4 PR #7822 (2025-04; Lean v4.9.0 and v4.15.0 included) prints *relative*
search paths (``./.lake/packages/mathlib/.lake/build/lib``, lean4 issue #4042). Workers run in their
own scratch directory, where those paths lead nowhere and ``import Mathlib`` fails with "unknown
module prefix 'Mathlib'"; so every path is made absolute against the project root before it is
cached, and the cache format is versioned so that a cache written with relative paths is not reused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

from prover.verifier.config import VerifierConfig
from prover.verifier.errors import LeanSetupError

logger = logging.getLogger(__name__)

REPL_RELPATH = Path(".lake/packages/REPL/.lake/build/bin/repl")
ENV_CACHE = Path(".lake/prover-env.json")
SETUP_HINT = (
    "build it with `bash scripts/setup_lean.sh` (installs elan, fetches Mathlib's build cache, "
    "builds the REPL) and point to it with `export PROVER_LEAN_PROJECT=/path/to/repo` "
    "or `--lean_project /path/to/repo`"
)
_KEEP = ("LEAN", "LAKE", "ELAN")  # prefixes of the variables lake env sets
_KEEP_EXACT = ("PATH", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH")
# Variables holding a list of directories, and variables holding one, that lake env may print relative.
_PATH_LISTS = ("LEAN_PATH", "LEAN_SRC_PATH", "PATH", "LD_LIBRARY_PATH", "DYLD_LIBRARY_PATH")
_PATH_SINGLE = ("LEAN_SYSROOT", "LAKE_HOME", "ELAN_HOME", "LAKE_CACHE_DIR")
# Part of the cache key: version 1 caches kept lake env's relative paths as printed.
ENV_CACHE_FORMAT = 2


def find_lean_project(config: VerifierConfig) -> Path:
    """The Lake project from config or $PROVER_LEAN_PROJECT; LeanSetupError naming the fix otherwise."""
    where = config.resolved_lean_project()
    if not where:
        raise LeanSetupError(f"no Lean project configured: {SETUP_HINT}")
    project = Path(where).expanduser().resolve()
    if not project.is_dir():
        raise LeanSetupError(f"Lean project {project} does not exist: {SETUP_HINT}")
    if not any((project / f).is_file() for f in ("lakefile.lean", "lakefile.toml")):
        raise LeanSetupError(
            f"{project} has no lakefile.lean / lakefile.toml, so it is not a Lake project: {SETUP_HINT}"
        )
    return project


def find_repl(config: VerifierConfig, project: Path) -> Path:
    repl = Path(config.repl_path).expanduser() if config.repl_path else project / REPL_RELPATH
    if not (repl.is_file() and os.access(repl, os.X_OK)):
        raise LeanSetupError(
            f"REPL binary {repl} not found or not executable (run `lake build repl` in {project}); {SETUP_HINT}"
        )
    return repl.resolve()


def _fingerprint(project: Path) -> str:
    h = hashlib.sha256(f"prover-env format {ENV_CACHE_FORMAT}\0".encode())
    for name in ("lake-manifest.json", "lean-toolchain"):
        f = project / name
        h.update(f.read_bytes() if f.is_file() else b"-")
    return h.hexdigest()


def absolute_env(env: dict[str, str], root: Path) -> dict[str, str]:
    """``env`` with every relative directory in its path variables made absolute against ``root``."""

    def absolute(entry: str) -> str:
        return entry if not entry or os.path.isabs(entry) else os.path.normpath(root / entry)

    out = dict(env)
    for key in _PATH_LISTS:
        if key in out:
            out[key] = os.pathsep.join(absolute(e) for e in out[key].split(os.pathsep))
    for key in _PATH_SINGLE:
        if key in out:
            out[key] = absolute(out[key])
    return out


def _all_absolute(env: dict[str, str]) -> bool:
    return all(os.path.isabs(e) for key in _PATH_LISTS if key in env for e in env[key].split(os.pathsep) if e)


def lean_env(project: Path) -> dict[str, str]:
    """The variables ``lake env`` sets in ``project`` (LEAN_PATH, LEAN_SYSROOT, PATH, ...) with absolute
    paths, cached on disk."""
    cache = project / ENV_CACHE
    fingerprint = _fingerprint(project)
    try:
        data = json.loads(cache.read_text())
        if data.get("fingerprint") == fingerprint and _all_absolute(data["env"]):
            return data["env"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    lake = shutil.which("lake") or str(Path("~/.elan/bin/lake").expanduser())
    if not Path(lake).is_file():
        raise LeanSetupError(f"`lake` not found on PATH or in ~/.elan/bin: {SETUP_HINT}")
    logger.info("resolving the Lean environment with `lake env` in %s (once)", project)
    try:
        out = subprocess.run([lake, "env", "env", "-0"], cwd=project, capture_output=True, timeout=600, check=True)
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise LeanSetupError(
            f"`lake env` failed in {project}: {exc} {detail.decode(errors='replace')[-500:]}; {SETUP_HINT}"
        ) from exc
    env = {}
    for item in out.stdout.decode().split("\0"):
        key, eq, value = item.partition("=")
        if eq and (key.startswith(_KEEP) or key in _KEEP_EXACT):
            env[key] = value
    if "LEAN_PATH" not in env:
        raise LeanSetupError(f"`lake env` in {project} set no LEAN_PATH; {SETUP_HINT}")
    env = absolute_env(env, project)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    try:  # atomic: several pools may resolve at once
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "env": env}, indent=1))
        tmp.replace(cache)
    except OSError as exc:
        logger.warning("could not cache the Lean environment in %s: %s", cache, exc)
    return env


def repl_launch(config: VerifierConfig) -> tuple[list[str], dict[str, str]]:
    """The command line that starts one REPL and the environment variables it needs."""
    if config.repl_command:
        # Workers run in their scratch directory: make relative file arguments absolute.
        return [
            str(Path(a).resolve()) if not a.startswith("-") and "/" in a and Path(a).exists() else a
            for a in config.repl_command
        ], {}
    project = find_lean_project(config)
    repl = find_repl(config, project)
    return [str(repl)], lean_env(project)


def lean_version_id(config: VerifierConfig) -> str:
    """What the verdicts of this setup depend on besides the policy: the REPL command or the toolchain."""
    if config.repl_command:
        return "command:" + " ".join(config.repl_command)
    where = config.resolved_lean_project()
    project = Path(where) if where else None
    if project and (project / "lean-toolchain").is_file():
        return f"{(project / 'lean-toolchain').read_text().strip()}:{_fingerprint(project)[:16]}"
    return f"project:{where}"
