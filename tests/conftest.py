"""Shared fixtures: the tiny model, and skips for what this machine cannot run."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_collection_modifyitems(config, items):
    lean = os.environ.get("PROVER_LEAN_PROJECT")
    skips = {
        "lean": None
        if lean
        else "needs Lean + Mathlib + the REPL: run scripts/setup_lean.sh and set PROVER_LEAN_PROJECT",
        "gpu": None if _has_cuda() else "needs a CUDA GPU",
        "network": None if os.environ.get("PROVER_TEST_NETWORK") else "needs the internet (set PROVER_TEST_NETWORK=1)",
        "vllm": None if importlib.util.find_spec("vllm") else "needs vLLM (pip install -e .[cpu-vllm] or .[gpu])",
        "ray": None if importlib.util.find_spec("ray") and shutil.which("ray") else "needs Ray (pip install -e .[ray])",
    }
    for item in items:
        for marker, reason in skips.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random Llama + byte-level BPE tokenizer on disk, built once per test session."""
    from prover.testing.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def shared_data_dir():
    """The data directory: $PROVER_DATA_DIR, else ``../shared/data`` beside the project (where CI puts it).
    Without it the tests that read the problem sets skip, saying where the files come from."""
    from pathlib import Path

    from prover.data.loading import NAMED_SETS, RELEASE_URL

    path = Path(os.environ.get("PROVER_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
    if not (path / NAMED_SETS["minif2f-test"]).is_file():
        pytest.skip(
            f"no problem sets at {path}: download the data/ folder of {RELEASE_URL} and set PROVER_DATA_DIR to it"
        )
    return path
