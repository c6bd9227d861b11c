"""The golden-conversation suite: the Lean REPL's own recorded conversations (leanprover-community/repl
``test/`` at tag v4.9.0 and at main 8948401, in ../shared/golden/repl) replayed through the project's
client, judge, tactic-mode reading and pool by tests/golden_replay.py, which answers with the
recorded answers verbatim.

What each table expects is read off the recordings themselves: an answer with an error message, a
``sorries`` entry or the sorry warning is a rejection; a tactic answer is a new state, an error, a
sorry (given up) or, with ``proofStatus: Completed``, the end of the proof.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from prover.search.backends import tactic_outcome
from prover.verifier import LeanPool, ProofRequest, Status, VerifierConfig
from prover.verifier.errors import ReplTimeout
from prover.verifier.judge import SORRY_WARNING, judge_command
from prover.verifier.repl import ReplProcess

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT.parent / "shared" / "golden" / "repl"
REPLAY = str(Path(__file__).with_name("golden_replay.py"))
VERSIONS = ["v4.9.0", "main"]

pytestmark = pytest.mark.skipif(
    not GOLDEN.is_dir(),
    reason=f"needs the REPL's recorded conversations at {GOLDEN} (../shared/golden/repl beside the project)",
)

sys.path.insert(0, str(Path(__file__).parent))
import golden_replay  # noqa: E402  (the replay's own reader of the recordings)


def recorded(version: str) -> dict[str, tuple[list, list[dict]]]:
    """name (relative to the version folder, without .in) -> (requests, parsed answers)."""
    root = GOLDEN / version
    return {
        str(Path(path).relative_to(root))[:-3]: (requests, [json.loads(a) for a in answers])
        for path, requests, answers in golden_replay.conversations([str(root)])
    }


def replay(version: str, *switches: str, sub: str = "") -> list[str]:
    return [sys.executable, REPLAY, "repl", "--golden", str(GOLDEN / version / sub), *switches]


# --- every recorded answer, read by the client ------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_client_reads_every_recorded_answer(version):
    conversations = recorded(version)
    assert len(conversations) >= (50 if version == "v4.9.0" else 70)

    async def converse(requests, expected, limit):
        async with limit:
            repl = ReplProcess(replay(version))
            await repl.start()
            try:
                for request, answer in zip(requests, expected, strict=True):
                    assert await repl.request(request, 30) == answer, (request, answer)
            finally:
                await repl.close()
        return len(requests)

    async def run_all():
        limit = asyncio.Semaphore(4)
        return await asyncio.gather(*(converse(r, a, limit) for r, a in conversations.values()))

    assert sum(asyncio.run(run_all())) == sum(len(r) for r, _ in conversations.values())


# --- command mode: what the verifier's layer 2 makes of each answer ------------------------------------

# (version, conversation) -> the check that rejects each command answer (None: Lean accepted it).
COMMAND_VERDICTS = {
    ("v4.9.0", "Mathlib/test/H20231020"): [None, None, None, None],  # import + three clean proofs
    ("v4.9.0", "Mathlib/test/H20231115_3"): [None, "lean"],  # unsolved goals after induction'
    ("v4.9.0", "Mathlib/test/H20231115_2"): [None, "sorry"],  # all_goals sorry
    ("v4.9.0", "tactic_sorry"): ["sorry"],
    ("v4.9.0", "term_sorry"): ["sorry"],
    ("v4.9.0", "dup_sorries"): ["sorry", "sorry"],
    ("v4.9.0", "incomplete"): ["lean", "lean"],
    ("v4.9.0", "unfinished_tactic_block"): ["lean"],
    ("v4.9.0", "no_goal_sorry"): ["lean"],
    ("v4.9.0", "def_eval"): [None, None],
    ("main", "Mathlib/test/H20231020"): [None, None, None, None],
    ("main", "Mathlib/test/H20231115_3"): [None, "lean"],
    ("main", "tactic_sorry"): ["sorry"],
    ("main", "dup_sorries"): ["sorry", "sorry"],
    ("main", "incomplete"): ["lean", "lean"],
    ("main", "invalid_line_break"): ["lean", "lean"],  # a raw newline in a request: `bysorry`
    ("main", "line_breaks"): ["lean", "sorry", None],
    ("main", "app_type_mismatch"): ["lean", "sorry"],  # (kernel) declaration has metavariables
}


@pytest.mark.parametrize("key", list(COMMAND_VERDICTS), ids=["/".join(k) for k in COMMAND_VERDICTS])
def test_command_answers_are_judged_as_recorded(key):
    requests, answers = recorded(key[0])[key[1]]
    commands = [a for r, a in zip(requests, answers) if "cmd" in r and "env" in a]
    assert [v.check if (v := judge_command(a)) else None for a in commands] == COMMAND_VERDICTS[key]


@pytest.mark.parametrize("version", VERSIONS)
def test_no_recorded_error_or_sorry_is_ever_accepted(version):
    judged = 0
    for requests, answers in recorded(version).values():
        for answer in answers:
            messages = answer.get("messages") or []
            bad = (
                answer.get("sorries")
                or any(m["severity"] == "error" for m in messages)
                or any(SORRY_WARNING.search(m["data"]) for m in messages)
            )
            if "env" in answer and bad:
                judged += 1
                assert judge_command(answer) is not None, answer
    assert judged >= 35


def test_sorry_warning_alone_rejects_in_both_quotings():
    quotings = {}
    for version in VERSIONS:
        for requests, answers in recorded(version).values():
            for answer in answers:
                for m in answer.get("messages") or []:
                    if SORRY_WARNING.search(m["data"]):
                        quotings.setdefault(version, set()).add(m["data"])
                        assert judge_command({**answer, "sorries": []}).check == "sorry"
    assert quotings["v4.9.0"] == {"declaration uses 'sorry'"}  # before Lean v4.28
    assert quotings["main"] == {"declaration uses `sorry`"}


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_environment_is_an_answer_without_env(version):
    requests, answers = recorded(version)["unknown_environment"]
    assert answers == [{"message": "Unknown environment."}]
    assert judge_command(answers[0]) is None  # no verdict in it: callers must require "env" (the pool does)


# --- tactic mode: what the search backend makes of each answer ------------------------------------------

# (version, conversation) -> the outcome of each tactic answer; None: no goals and no proofStatus,
# so the backend checks the whole script in command mode before calling the proof finished.
TACTIC_OUTCOMES = {
    ("v4.9.0", "proof_step"): ["state", "state", None],
    ("v4.9.0", "readme"): ["state", None],
    ("v4.9.0", "tactic_mode_sorry"): ["given_up"],
    ("v4.9.0", "invalid_tactic"): ["error"],  # a NEW state, goals [], and the error
    ("v4.9.0", "unknown_tactic"): ["error"],
    ("v4.9.0", "unknown_proof_state"): ["error"],
    # `have h : x > 0 := by sorry` leaves a sorry; `exact h0` then shows no goals though the term still
    # has metavariables (main says so: "Incomplete: contains metavariable(s)"); v4.9.0 cannot say
    ("v4.9.0", "name_generator"): ["given_up", None, None, None, None, None, "error", "error"],
    ("v4.9.0", "Mathlib/test/20240209"): ["error"],
    ("v4.9.0", "Mathlib/test/induction"): ["state", "state", "given_up"],
    ("main", "proof_step"): ["state", "state", "finished"],
    ("main", "readme"): ["state", "finished"],
    ("main", "tactic_mode_sorry"): ["given_up"],
    ("main", "invalid_tactic"): ["error"],
    ("main", "unknown_tactic"): ["error"],
    ("main", "name_generator"): ["given_up"] + ["error"] * 7,
    ("main", "app_type_mismatch"): ["state", "state", "error"],  # no goals, metavariables left
    ("main", "self_proof_apply_check"): ["error"],  # Error: kernel type check failed
    ("main", "Mathlib/test/exact"): ["finished", "error"],
}


@pytest.mark.parametrize("key", list(TACTIC_OUTCOMES), ids=["/".join(k) for k in TACTIC_OUTCOMES])
def test_tactic_answers_are_read_as_recorded(key):
    requests, answers = recorded(key[0])[key[1]]
    outcomes = [tactic_outcome(a) for r, a in zip(requests, answers) if "tactic" in r]
    assert [o.kind if o else None for o in outcomes] == TACTIC_OUTCOMES[key]


@pytest.mark.parametrize("version", VERSIONS)
def test_no_tactic_answer_without_completed_status_finishes_a_proof(version):
    seen = 0
    for requests, answers in recorded(version).values():
        for request, answer in zip(requests, answers):
            if "tactic" in request:
                seen += 1
                outcome = tactic_outcome(answer)
                if outcome is not None and outcome.kind == "finished":
                    assert answer.get("proofStatus") == "Completed" and not answer.get("sorries"), answer
    assert seen >= 20


# --- the pool on the recorded Mathlib conversation H20231020 ---------------------------------------------

STANDARD = "propext,Classical.choice,Quot.sound"


def h20231020(version: str) -> tuple[str, list[tuple[str, str, str]]]:
    """The header, and (name, statement, proof) of the three proofs, of H20231020."""
    requests, _ = recorded(version)["Mathlib/test/H20231020"]
    proofs = []
    for r in requests[1:]:
        statement, _, tactic = r["cmd"].rpartition(":= by ")
        proofs.append((statement.split()[1], statement + ":= by", " " + tactic))
    return requests[0]["cmd"], proofs


def pool_verdicts(version: str, axioms: list[str], proofs, header, **config) -> list:
    switches = [f for a in axioms for f in ("--axioms", a)]
    command = replay(version, *switches, sub="Mathlib/test")
    settings = dict(repl_command=command, sandbox="none", workers=1, timeout=30, start_timeout=30)
    with LeanPool(VerifierConfig(**{**settings, **config})) as pool:
        return [
            pool.check_batch([ProofRequest(statement, proof, header, name)])[0] for name, statement, proof in proofs
        ]


@pytest.mark.parametrize("version", VERSIONS)
def test_pool_proves_the_recorded_clean_proofs(version):
    header, proofs = h20231020(version)
    verdicts = pool_verdicts(version, [f"{name}={STANDARD}" for name, _, _ in proofs], proofs, header)
    assert [v.status for v in verdicts] == [Status.PROVED] * 3, verdicts


@pytest.mark.parametrize("version", VERSIONS)
def test_axioms_of_an_ambiguous_name_are_those_of_the_theorem(version):
    """Defect 3: under the recorded header's `open ... Nat ...`, `#print axioms NAME` also lists
    `Nat.NAME` (first). Its clean list must not stand in for the theorem's, which uses sorryAx."""
    header, proofs = h20231020(version)
    assert "open Nat" in header
    name, statement, proof = proofs[0]
    verdict = pool_verdicts(version, [f"Nat.{name}=propext", f"{name}=propext,sorryAx"], [proofs[0]], header)[0]
    assert verdict.status is Status.REJECTED and verdict.check == "axioms" and "sorryAx" in verdict.reason, verdict


@pytest.mark.parametrize("version", VERSIONS)
def test_wrapped_axiom_lists_are_read_whole(version):
    header, proofs = h20231020(version)
    name = proofs[0][0]
    native = "Lean.ofReduceBool,Lean.ofReduceNat,Lean.trustCompiler"
    line = golden_replay.axioms_message(name, f"{STANDARD},{native},sorryAx".split(","))
    assert "\n " in line and line.endswith("sorryAx]")  # past 120 columns: one axiom a line
    allowed = pool_verdicts(version, [f"{name}={STANDARD},{native}"], [proofs[0]], header, allow_native=True)[0]
    assert allowed.status is Status.PROVED, allowed
    cheat = pool_verdicts(version, [f"{name}={STANDARD},{native},sorryAx"], [proofs[0]], header, allow_native=True)[0]
    assert cheat.status is Status.REJECTED and "sorryAx" in cheat.reason, cheat


def test_a_request_no_recording_holds_is_never_a_verdict():
    header, proofs = h20231020("v4.9.0")
    name, statement, _ = proofs[0]
    verdict = pool_verdicts("v4.9.0", [f"{name}={STANDARD}"], [(name, statement, " simp")], header)[0]
    assert verdict.status is Status.ERROR and verdict.check == "infra" and "no recording" in verdict.reason


# --- defect 1: the REPL up to v4.9.0 never flushes its answers -------------------------------------------


def test_unflushed_repl_never_answers_a_client_that_keeps_it_open():
    header, _ = h20231020("v4.9.0")

    async def ask(stdout: str):
        repl = ReplProcess(replay("v4.9.0", "--stdout", stdout, sub="Mathlib/test"))
        await repl.start()
        try:
            return await repl.request({"cmd": header}, 3)
        finally:
            await repl.close()

    with pytest.raises(ReplTimeout):  # every worker at v4.9.0 hung here
        asyncio.run(ask("buffered"))
    assert asyncio.run(ask("flushed")) == {"env": 0}  # REPL v4.10.0 on, or v4.9.0 with the flush patch


def test_smoke_test_keeps_stdin_open_and_names_the_missing_flush():
    header, proofs = h20231020("v4.9.0")
    _, statement, proof = proofs[0]
    smoke = [
        sys.executable,
        str(ROOT / "scripts/repl_smoke.py"),
        "--timeout",
        "3",
        "--header",
        header,
        "--proof",
        statement + proof,
        "--",
    ]
    buffered = subprocess.run(
        smoke + replay("v4.9.0", "--stdout", "buffered", sub="Mathlib/test"), capture_output=True, text=True, timeout=60
    )
    assert buffered.returncode == 1 and "does not flush stdout" in buffered.stderr
    flushed = subprocess.run(
        smoke + replay("v4.9.0", "--stdout", "flushed", sub="Mathlib/test"), capture_output=True, text=True, timeout=60
    )
    assert flushed.returncode == 0, flushed.stderr
    # The old smoke test closed stdin, which makes the REPL exit and flush: it passed on the hanging REPL.
    closed = subprocess.run(
        replay("v4.9.0", "--stdout", "buffered", sub="Mathlib/test"),
        input=json.dumps({"cmd": header}) + "\n\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(closed.stdout) == {"env": 0}
