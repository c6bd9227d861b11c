"""Is ``--model`` something a sampler can load? Answered from ``config.json`` alone, before any
weights are read, so a mistyped path costs a second and one line instead of a model load and a
chain of tracebacks (the evaluator, the search and the trainer all take the same ``--model``)."""

from __future__ import annotations

import re
from pathlib import Path

# A hub id is "name" or "owner/name" of letters, digits, "-", "_", "." (huggingface_hub's
# validate_repo_id); anything else (two slashes, a leading "/", "~" or ".") can only be a path.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelNotFound(ValueError):
    """``--model`` names no loadable model; the message says what is there instead, if anything."""


def check_model(model: str) -> None:
    """Raise ``ModelNotFound`` unless ``model`` is a directory with ``config.json`` or a hub id whose
    ``config.json`` can be fetched (or is in the hub cache)."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFound(f"{path} has no config.json, so it is not a Hugging Face model{_inside(path)}")
        return
    if path.exists():
        raise ModelNotFound(f"{path} is a file; a model is a directory with config.json, or a hub id")
    if not _HUB_ID.match(model) or ".." in model or "--" in model:
        raise ModelNotFound(f"model directory {path} does not exist")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:  # config.json only: a few hundred bytes, cached with the model for later loads
        hf_hub_download(model, "config.json")
    except (OSError, ValueError, EntryNotFoundError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelNotFound(
            f"model {model!r} is neither a local directory nor loadable from the hub ({type(exc).__name__}: {first})"
        ) from None


def _inside(path: Path) -> str:
    """A hint when ``path`` is a training run directory: the model it produced, or its last checkpoint."""
    final = path / "final"
    if (final / "config.json").is_file():
        return f"; it is a training run: its trained model is --model {final}"
    checkpoints = sorted(
        (
            p
            for p in path.glob("checkpoint-*")
            if (p / "config.json").is_file() and p.name.removeprefix("checkpoint-").isdigit()
        ),
        key=lambda p: int(p.name.removeprefix("checkpoint-")),
    )
    if checkpoints:
        return f"; it is a training run without final/: its latest checkpoint is --model {checkpoints[-1]}"
    return ""
