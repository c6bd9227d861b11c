"""The static screen on 3,475 real proofs that Lean accepted in their sources
(../shared/data/real_proofs.jsonl): no rejection outside the stated policies
(scripts/screen_real_proofs.py says which and why)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "screen_real_proofs.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("screen_real_proofs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows(tool, shared_data_dir):
    path = shared_data_dir / "real_proofs.jsonl"
    if not path.is_file():
        pytest.skip(f"needs {path} (../shared/data/real_proofs.jsonl)")
    return tool.read_rows(path)


def test_no_wrongful_rejection_of_real_proofs(tool, rows):
    report = tool.measure(rows, allow_native=False)
    assert report["proofs"] == len(rows) >= 3000
    wrongful = {rule: report["examples"][(rule, why)][:3] for (rule, why) in report["per_rule"] if why is None}
    assert report["wrongful"] == 0, wrongful
    by_policy = {why: n for (_, why), n in report["per_rule"].items()}
    assert set(by_policy) <= {"native", "declarations after the proof"}
    # every native rejection is a proof that really uses native evaluation
    natives = [r for r in rows if "native_decide" in r["proof"] or "+native" in r["proof"]]
    assert by_policy.get("native", 0) == len(natives) > 0


def test_allow_native_leaves_only_declarations_after_the_proof(tool, rows):
    report = tool.measure(rows, allow_native=True)
    assert report["wrongful"] == 0
    assert {rule for rule, _ in report["per_rule"]} <= {"command"}


def test_policies_explain_only_what_they_say(tool):
    rows = [
        {"name": "after", "source": "s", "proof": "  simp\n\ntheorem extra : True := trivial"},  # policy
        {"name": "inside", "source": "s", "proof": "  simp\n  theorem extra : True := trivial"},  # not at line start
        {"name": "eval", "source": "s", "proof": "  simp\n#eval 1"},  # a command is no declaration
        {"name": "native", "source": "s", "proof": "  native_decide"},
        {"name": "honest", "source": "s", "proof": "  open scoped Real in\n  nlinarith [Real.pi_gt_three]"},
    ]
    report = tool.measure(rows, allow_native=False)
    assert report["rejected"] == 4 and report["wrongful"] == 2
    assert report["per_rule"][("command", "declarations after the proof")] == 1
    assert report["per_rule"][("native", "native")] == 1


def test_command_line_reports_and_fails_on_wrongful_rejections(tool, tmp_path, capsys):
    data = tmp_path / "proofs.jsonl"
    data.write_text(json.dumps({"name": "x", "source": "s", "proof": "  stop"}) + "\n")
    assert tool.main(["--data", str(data)]) == 1
    assert "1 wrongfully" in capsys.readouterr().out
    assert tool.main(["--data", str(tmp_path / "missing.jsonl")]) == 2
