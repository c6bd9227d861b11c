"""A rerun resumes only the run that was started: settings that differ from the run directory's
``config.yaml`` are refused, naming each key, unless the user says to continue anyway.

Without this check a rerun with ``--grpo.learning_rate 1e-5`` "resumed" a finished run, trained
nothing new, reprinted the old table as the new result and rewrote ``config.yaml`` to claim the
new value.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from prover.config import to_dict

logger = logging.getLogger(__name__)

CONFIG_FILE = "config.yaml"

# Settings that change how a run is watched, not what it computes; a rerun may change them freely.
FREE_KEYS = frozenset(
    {
        "resume",
        "resume_changed",
        "grpo.output_dir",  # the directory itself (moved, or named relative vs absolute)
        "grpo.report_to",
        "grpo.disable_tqdm",
        "grpo.save_total_limit",
        "grpo.run_name",
        "grpo.push_to_hub",
        "grpo.num_completions_to_print",
        "eval.enabled",  # switching the after-training evaluation on or off changes no trained weight
    }
)
FREE_PREFIXES = ("grpo.logging_", "grpo.log_", "grpo.hub_", "grpo.trackio_")


class SettingsChanged(RuntimeError):
    """The run directory holds a run started with other settings."""


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"grpo": {"beta": 0.0}}`` -> ``{"grpo.beta": 0.0}`` (lists stay values)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _free(key: str) -> bool:
    return key in FREE_KEYS or key.startswith(FREE_PREFIXES)


_ABSENT = object()


def changed_settings(recorded: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted key -> (recorded value, value now) for every setting that changes what the run computes."""
    old, new = flatten(recorded), flatten(now)
    changed = {}
    for key in sorted(set(old) | set(new)):
        if _free(key):
            continue
        a, b = old.get(key, _ABSENT), new.get(key, _ABSENT)
        if a != b:
            changed[key] = (a, b)
    return changed


def _show(value: Any) -> str:
    return "(absent)" if value is _ABSENT else repr(value)


def recorded_settings(run_dir: str | Path) -> dict[str, Any] | None:
    """The settings a run directory was started with, or None when it holds no run."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SettingsChanged(
            f"{path} is not valid YAML ({exc}): cannot tell which run this directory holds; "
            "choose another --grpo.output_dir"
        ) from None
    return data if isinstance(data, dict) else {}


def check_resume(
    run_dir: str | Path, config: Any, resume: bool, resume_changed: bool, flag_prefix: str = "--"
) -> dict[str, tuple[Any, Any]]:
    """Refuse (``SettingsChanged``) to reuse ``run_dir`` for ``config`` unless it holds no run or a run
    with the same settings; returns the changes accepted with ``resume_changed``.

    ``resume`` False never reuses a directory that holds a run.
    """
    recorded = recorded_settings(run_dir)
    if recorded is None:
        return {}
    fresh = f"to start fresh, pass another {flag_prefix}grpo.output_dir (or delete {run_dir})"
    if not resume:
        raise SettingsChanged(f"{run_dir} holds a run and resume is off: {fresh}")
    changed = changed_settings(recorded, to_dict(config))
    if not changed:
        return {}
    listing = "; ".join(f"{key}: {_show(old)} there, {_show(new)} now" for key, (old, new) in changed.items())
    if not resume_changed:
        raise SettingsChanged(
            f"{run_dir} holds a run with other settings ({listing}); {fresh}; to continue that "
            f"run with the new settings on purpose, add {flag_prefix}resume_changed"
        )
    logger.warning("continuing %s with changed settings (resume_changed): %s", run_dir, listing)
    return changed
