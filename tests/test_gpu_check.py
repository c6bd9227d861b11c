"""scripts/gpu_check.sh's CPU side, which runs on any machine: its summary must count every optimizer
step (the script once parsed console lines that the quiet log format no longer prints, and reported 0
steps for every device)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cpu_side_reports_four_finite_steps(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "CUDA_VISIBLE_DEVICES": ""}  # the CPU side only, on any host
    done = subprocess.run(
        ["bash", "scripts/gpu_check.sh", "--allow-no-gpu", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "gpu_check.json").read_text())
    cpu = summary["cpu"]
    assert cpu["steps"] == 4 and cpu["losses_finite"] and len(cpu["seconds_per_step"]) == 4
    assert cpu["median_after_first"] > 0 and summary["gpu_tests"]["exit_status"] == "skipped"
