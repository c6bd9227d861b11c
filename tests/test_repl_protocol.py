"""The REPL protocol: the double speaks it as the real REPL does, and ``ReplProcess`` reads it right,
including the failures (timeout, crash, garbage, oversized answers)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prover.verifier.errors import ReplCrashed, ReplProtocolError, ReplTimeout
from prover.verifier.judge import SORRY_WARNING, judge_axioms, judge_command, parse_axioms
from prover.verifier.repl import ReplProcess

DOUBLE = str(Path(__file__).with_name("repl_double.py"))


def converse(requests: list[str], *args: str) -> list[dict]:
    """Raw bytes in, the double's framed answers out (no client code involved)."""
    out = subprocess.run(
        [sys.executable, DOUBLE, *args], input="".join(requests), capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.endswith("\n\n")
    chunks = [c for c in out.stdout.split("\n\n") if c.strip()]
    assert all("\n" in c for c in chunks if len(c) > 20), "answers are pretty-printed over several lines"
    return [json.loads(c) for c in chunks]


def req(obj: dict) -> str:
    return json.dumps(obj) + "\n\n"


def test_double_env_numbering_messages_and_axioms():
    answers = converse(
        [
            req({"cmd": "import Mathlib"}),
            req({"cmd": "theorem t : 1 = 1 := by\n  rfl", "env": 0}),
            req({"cmd": "#print axioms t", "env": 1}),
            req({"cmd": "theorem u : 1 = 1 := by rfl -- double:no_axioms", "env": 0}),
            req({"cmd": "#print axioms u", "env": 3}),
            req({"cmd": "#print axioms t", "env": 3}),  # env 3 came from env 0: it does not know t
            req({"cmd": "theorem v : 1 = 1 := by rfl", "env": 42}),
        ]
    )
    assert [a.get("env") for a in answers[:6]] == [0, 1, 2, 3, 4, 5]
    assert "messages" not in answers[1] and "sorries" not in answers[1]  # empty lists are left out
    assert parse_axioms(answers[2]) == ["propext", "Classical.choice", "Quot.sound"]
    assert parse_axioms(answers[4]) == []
    assert answers[5]["messages"][0]["severity"] == "error" and parse_axioms(answers[5]) is None
    assert answers[6] == {"message": "Unknown environment."}


@pytest.mark.parametrize("quote", ["apostrophe", "backtick"])
def test_double_sorry_in_both_quotings(quote):
    answers = converse(
        [req({"cmd": "import Mathlib"}), req({"cmd": "theorem t : 1 = 1 := by sorry", "env": 0})],
        "--sorry-quote",
        quote,
    )
    warning = answers[1]["messages"][0]
    assert warning["severity"] == "warning" and SORRY_WARNING.search(warning["data"])
    assert ("`sorry`" if quote == "backtick" else "'sorry'") in warning["data"]
    assert answers[1]["sorries"][0]["goal"]
    assert judge_command({**answers[1], "sorries": []}).check == "sorry"  # the warning alone rejects


def test_double_reads_multiline_requests_and_dies_on_bad_json():
    # The REPL trims and joins a request's lines, then parses; malformed JSON kills it.
    ok = converse(['{"cmd":\n  "import Mathlib"}\n\n'])
    assert ok == [{"env": 0}]
    out = subprocess.run([sys.executable, DOUBLE], input="{not json\n\n", capture_output=True, text=True, timeout=30)
    assert out.returncode == 1 and "Could not parse JSON" in out.stderr


@pytest.mark.parametrize("version", ["v4.9.0", "main"])
def test_double_tactic_mode_follows_the_graph(tmp_path, version):
    graph = {
        "theorems": {"t": "root"},
        "states": {
            "root": {
                "goals": ["x : ℕ\n⊢ x + 0 = x"],
                "tactics": {"simp": "done", "omega": "mid", "ring": {"error": "ring failed"}},
            },
            "mid": {"goals": ["⊢ True"], "tactics": {"trivial": "done"}},
            "done": {"goals": []},
        },
    }
    (tmp_path / "g.json").write_text(json.dumps(graph))
    answers = converse(
        [
            req({"cmd": "import Mathlib"}),
            req({"cmd": "theorem t (x : ℕ) : x + 0 = x := by sorry", "env": 0}),
            req({"tactic": "omega", "proofState": 0}),
            req({"tactic": "trivial", "proofState": 1}),
            req({"tactic": "ring", "proofState": 0}),
            req({"tactic": "blah", "proofState": 0}),
            req({"tactic": "simp", "proofState": 99}),
        ],
        "--graph",
        str(tmp_path / "g.json"),
        "--version",
        version,
    )
    sorry = answers[1]["sorries"][0]
    assert sorry["proofState"] == 0 and sorry["goal"] == "x : ℕ\n⊢ x + 0 = x"
    # proofStatus exists from REPL v4.19.0 on (golden/repl/{v4.9.0,main}/proof_step.expected.out)
    status = (lambda s: {"proofStatus": s}) if version == "main" else (lambda s: {})
    assert answers[2] == {"proofState": 1, "goals": ["⊢ True"], **status("Incomplete: open goals remain")}
    assert answers[3] == {"proofState": 2, "goals": [], **status("Completed")}
    # a failing tactic answers a NEW state with no goals and the error (golden/repl/*/invalid_tactic)
    assert answers[4]["proofState"] == 3 and answers[4]["goals"] == []
    assert answers[4]["messages"][0]["severity"] == "error"
    assert answers[5]["message"].startswith("Lean error:")
    assert answers[6] == {"message": "Unknown proof state."}


def test_judge_layers():
    assert judge_command({"env": 1}) is None
    assert judge_command({"env": 1, "messages": [{"severity": "error", "data": "unsolved goals"}]}).check == "lean"
    assert judge_command({"env": 1, "sorries": [{"goal": "⊢ False"}]}).check == "sorry"
    info = [{"severity": "info", "data": "'t' depends on axioms: [propext,\n Classical.choice, Quot.sound]"}]
    allow = {"propext", "Classical.choice", "Quot.sound"}
    assert judge_axioms({"messages": info}, allow).status.value == "proved"
    bad = [{"severity": "info", "data": "`t` depends on axioms: [propext, sorryAx]"}]
    assert "sorryAx" in judge_axioms({"messages": bad}, allow).reason
    none = [{"severity": "info", "data": "'t' does not depend on any axioms"}]
    assert judge_axioms({"messages": none}, allow).proved
    assert judge_axioms({"messages": []}, allow).status.value == "rejected"  # no list: never proved


def run(coro):
    return asyncio.run(coro)


def test_client_reads_framed_answers_and_huge_messages():
    async def go():
        repl = ReplProcess([sys.executable, DOUBLE])
        await repl.start()
        try:
            assert await repl.request({"cmd": "import Mathlib"}, 10) == {"env": 0}
            big = await repl.request({"cmd": "theorem t : True := by trivial -- double:huge=3000000", "env": 0}, 10)
            assert len(big["messages"][0]["data"]) == 3_000_000
            # A newline inside the command survives: json.dumps escapes it on the single request line.
            answer = await repl.request({"cmd": "theorem t : 1 = 1 := by\n  sorry", "env": 0}, 10)
            assert answer["sorries"]
        finally:
            await repl.close()
        assert not repl.alive and not repl.scratch.exists()

    run(go())


@pytest.mark.parametrize(
    "directive, error, words",
    [
        ("hang", ReplTimeout, "no answer"),
        ("garbage", ReplProtocolError, "unparsable"),
        ("sigkill", ReplCrashed, "SIGKILL"),
        ("exit=3", ReplCrashed, "code 3"),
        ("huge=2000000", ReplProtocolError, "larger than"),
    ],
)
def test_client_failures_kill_the_process(directive, error, words):
    async def go():
        repl = ReplProcess([sys.executable, DOUBLE], max_response_bytes=1 << 20)
        await repl.start()
        try:
            await repl.request({"cmd": "import Mathlib"}, 10)
            with pytest.raises(error) as info:
                await repl.request({"cmd": f"theorem t : True := by trivial -- double:{directive}", "env": 0}, 1.0)
            assert words in str(info.value)
            await asyncio.sleep(0.05)
            assert not repl.alive or (await repl._reap()) is not None
        finally:
            await repl.close()

    run(go())
