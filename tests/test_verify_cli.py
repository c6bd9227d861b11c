"""``python -m prover.verify``: verdicts per line in input order, bad lines named, resume, static screen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from prover.verify import main

DOUBLE = str(Path(__file__).with_name("repl_double.py"))
DOUBLE_ARGS = ["--repl_command", json.dumps([sys.executable, DOUBLE]), "--workers", "2", "--timeout", "5"]

LINES = [
    {"name": "ok", "statement": "theorem ok : 1 = 1 := by\n", "proof": "  rfl -- double:slow=0.2"},
    {"name": "cheat", "statement": "theorem cheat : 1 = 1 := by\n", "proof": "  sorry"},
    "this line is not JSON",
    {"name": "wrong", "statement": "import Mathlib\n\ntheorem wrong : 1 = 2 := by\n", "proof": "  rfl -- double:error"},
    {"name": "no_statement", "proof": "  rfl"},
    {"name": "late", "statement": "theorem late : 2 = 2 := by\n", "proof": "  rfl", "header": "import Mathlib\n"},
]


def write_input(path: Path) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in LINES) + "\n")
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(text) for text in path.read_text().splitlines()]


def test_verdicts_in_order_with_bad_lines_named(tmp_path, capsys):
    out = tmp_path / "verdicts.jsonl"
    code = main([str(write_input(tmp_path / "in.jsonl")), "--out", str(out), *DOUBLE_ARGS])
    assert code == 1  # some input lines were bad
    records = read(out)
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["status"] for r in records] == ["proved", "rejected", "error", "rejected", "error", "proved"]
    assert records[1]["check"] == "screen" and records[3]["check"] == "lean"
    assert records[2]["reason"].startswith("line 3: not valid JSON")
    assert records[4]["reason"] == "line 5: missing field 'statement'"
    assert records[0]["name"] == "ok" and records[0]["time"] >= 0.2  # input fields are kept
    assert "proved 2" in capsys.readouterr().out


def test_resume_skips_lines_already_answered(tmp_path):
    src = write_input(tmp_path / "in.jsonl")
    out = tmp_path / "verdicts.jsonl"
    main([str(src), "--out", str(out), *DOUBLE_ARGS])
    # Keep line 1 (marked so we can see it is not redone), as if the run had died writing line 2.
    first = {**read(out)[0], "reason": "from the first run"}
    out.write_text(json.dumps(first) + "\n" + '{"line": 2, "sta')
    main([str(src), "--out", str(out), *DOUBLE_ARGS])
    records = read(out)
    assert records[0]["reason"] == "from the first run"
    assert sorted(r["line"] for r in records) == [1, 2, 3, 4, 5, 6]


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "prover.verify", *argv], capture_output=True, text=True, timeout=120)


def test_screened_output_is_not_taken_for_lean_verdicts(tmp_path):
    """A --static-only file, then the Lean run with the same --out: refused, naming the mode, file kept
    (it used to say "nothing to do" and exit 0, so no screened line was ever checked by Lean)."""
    src = write_input(tmp_path / "in.jsonl")
    out = tmp_path / "v.jsonl"
    assert run_cli(str(src), "--static-only", "--out", str(out)).returncode == 1  # two bad input lines
    screened = out.read_bytes()
    lean = run_cli(str(src), "--out", str(out), *DOUBLE_ARGS)
    assert lean.returncode == 2, lean.stderr
    (line,) = lean.stderr.strip().splitlines()  # one line, no progress bar, no traceback
    assert line.startswith("error: ") and "mode: 'static-only' there, 'lean' now" in line
    assert out.read_bytes() == screened


def test_resume_under_another_timeout_is_refused(tmp_path):
    src = write_input(tmp_path / "in.jsonl")
    out = tmp_path / "v.jsonl"
    main([str(src), "--out", str(out), *DOUBLE_ARGS])
    done = out.read_bytes()
    other = run_cli(str(src), "--out", str(out), *DOUBLE_ARGS[:-1], "7")
    assert other.returncode == 2 and "timeout: 5.0 there, 7.0 now" in other.stderr
    assert out.read_bytes() == done
    same = run_cli(str(src), "--out", str(out), *DOUBLE_ARGS)
    assert same.returncode == 0 and "nothing to do" in same.stdout


def test_lines_without_their_settings_are_not_resumed(tmp_path):
    src = write_input(tmp_path / "in.jsonl")
    out = tmp_path / "v.jsonl"
    out.write_text(json.dumps({"line": 1, "status": "passed_screen", "check": "screen"}) + "\n")
    old = run_cli(str(src), "--out", str(out), *DOUBLE_ARGS)
    assert old.returncode == 2 and "do not say which mode and settings" in old.stderr


def test_static_only_needs_no_lean(tmp_path):
    out = tmp_path / "screened.jsonl"
    main([str(write_input(tmp_path / "in.jsonl")), "--out", str(out), "--static-only"])
    statuses = {r["line"]: r["status"] for r in read(out)}
    assert statuses == {
        1: "passed_screen",
        2: "rejected",
        3: "error",
        4: "passed_screen",
        5: "error",
        6: "passed_screen",
    }


def test_entry_point_and_config_errors(tmp_path):
    src = write_input(tmp_path / "in.jsonl")
    bad = subprocess.run(
        [sys.executable, "-m", "prover.verify", str(src), "--static-only", "--no_such_field", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "no_such_field" in bad.stderr
    ok = subprocess.run(
        [sys.executable, "-m", "prover.verify", str(src), "--static-only"], capture_output=True, text=True, timeout=60
    )
    assert len(ok.stdout.splitlines()) == 6 and "6 lines" in ok.stderr


def test_help_lists_each_option_once():
    options = [line.split()[0] for line in run_cli("--help").stdout.splitlines() if line.startswith("  --")]
    assert options.count("--workers") == 1 and options.count("--timeout") == 1
    assert "--start_timeout" in options  # the VerifierConfig fields are still listed
