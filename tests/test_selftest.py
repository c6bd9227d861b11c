"""The self-test (`python -m prover.verify --selftest`) run against the REPL double acting REPL v4.9.0:
every section runs, each line has its verdict, time and peak memory, and the REPL's answers are
written in the golden format. The double cannot do mathematics, so the one case only Lean can judge
(a wrong `linarith`) is the one reported as unexpected."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

from prover.verifier.config import VerifierConfig
from prover.verifier.selftest import TACTIC_STATEMENT, run_selftest

DOUBLE = str(Path(__file__).with_name("repl_double.py"))
ROOT = Path(__file__).resolve().parents[1]


def test_selftest_runs_every_section_and_writes_golden_files(tmp_path):
    graph = {
        "theorems": {"selftest_tactics": "root"},
        "states": {
            "root": {
                "goals": ["x : ℕ\nh : x + 1 = 3\n⊢ x = 2"],
                "tactics": {
                    "omega": "done",
                    "exact selftest_no_such_lemma": {"error": "unknown identifier"},
                    "exact h": {"error": "type mismatch"},
                },
            },
            "done": {"goals": []},
        },
    }
    (tmp_path / "graph.json").write_text(json.dumps(graph))
    config = VerifierConfig(
        repl_command=[sys.executable, DOUBLE, "--version", "v4.9.0", "--graph", str(tmp_path / "graph.json")],
        sandbox="none",
        workers=1,
        timeout=30,
        start_timeout=30,
    )
    out = io.StringIO()
    code = run_selftest(config, tmp_path / "answers", stream=out)
    text = out.getvalue()
    assert code == 1, text
    assert "unexpected: pool selftest_wrong: proved/axioms, expected rejected/lean" in text
    assert text.count("unexpected:") == 1, text
    rows = [line for line in text.splitlines() if line.startswith(("ok ", "BAD"))]
    assert {row.split()[1] for row in rows} == {"pool", "layers", "tactics"}
    assert all(row.rstrip().split(" s ")[1].split()[1] == "MB" for row in rows if " s " in row), rows
    assert any("selftest_twin" in row and row.startswith("ok ") for row in rows)  # the anchored name
    for name in ("selftest_layers", "selftest_tactics"):
        requests = (tmp_path / "answers" / f"{name}.in").read_text().split("\n\n")
        answers = (tmp_path / "answers" / f"{name}.expected.out").read_text().split("\n\n")
        requests, answers = [json.loads(r) for r in requests if r], [json.loads(a) for a in answers if a.strip()]
        assert len(requests) == len(answers) >= 5
    tactics = [json.loads(r) for r in (tmp_path / "answers/selftest_tactics.in").read_text().split("\n\n") if r]
    assert any(
        r.get("cmd", "").startswith(TACTIC_STATEMENT) and "omega" in r["cmd"] for r in tactics
    )  # the script check


def test_selftest_without_lean_is_a_one_line_error(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-m", "prover.verify", "--selftest", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and out.stderr.strip().count("\n") == 0 and "no Lean project" in out.stderr
    missing = subprocess.run(
        [sys.executable, "-m", "prover.verify"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert missing.returncode == 2 and "--selftest" in missing.stderr
