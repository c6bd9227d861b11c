"""A Kimina snippet as proof requests (header, one request per theorem, the screen over the whole
file), and our verdicts written as Kimina answers whose ``analyze()`` status follows the verdict."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("pydantic", reason="the wire format needs pydantic: pip install -e .[service]")

from prover.verifier import LeanPool, ProofRequest, Status, Verdict, VerifierConfig  # noqa: E402
from prover.verifier.judge import theorem_name  # noqa: E402
from prover.verifier.service.kimina import check_result, snippet_verdict, verify_result  # noqa: E402
from prover.verifier.service.snippets import Mark, plan_snippet, snippet_positions  # noqa: E402
from prover.verifier.split import layout  # noqa: E402

DOUBLE = str(Path(__file__).with_name("repl_double.py"))
GOEDEL = """import Mathlib
import Aesop

set_option maxHeartbeats 400000

open BigOperators Real Nat Topology Rat

/- informal statement -/
theorem lean_workbook_1 (a b : ℝ) (h : a = b) : b = a := by
  /- a comment with the word theorem in it -/
  linarith
"""
TWO = """import Mathlib

/-- a helper -/
lemma aux (x : ℝ) (h : (0 : ℝ) ≤ x := by positivity) : 0 ≤ x ^ 2 := by
  positivity -- first proof

set_option maxHeartbeats 0 in
/-- the main one -/
private theorem main (a : ℝ) : a ^ 2 ≥ 0 := by
  open Real in nlinarith [aux a, sq_nonneg a]

end Foo
"""


def test_header_is_the_imports_and_the_body_one_request_per_theorem():
    plan = plan_snippet(GOEDEL)
    assert plan.verdict is None and plan.header == "import Mathlib\nimport Aesop\n"
    assert plan.theorems == ("lean_workbook_1",)
    (request,) = plan.requests
    # options and opens stay in the body: snippets that differ only there share workers
    assert request.statement.startswith("\nset_option maxHeartbeats 400000\n\nopen BigOperators")
    assert (
        request.statement.endswith(": b = a :=")
        and request.proof == " by\n  /- a comment with the word theorem in it -/\n  linarith\n"
    )
    assert request.header + request.statement + request.proof == GOEDEL


def test_each_theorem_is_checked_up_to_the_end_of_its_proof():
    plan = plan_snippet(TWO)
    assert plan.theorems == ("aux", "main") and plan.places == (Mark(4, 6, 3), Mark(9, 16, 4))
    first, last = plan.requests
    # the binder's default `:= by positivity` is inside brackets: the signature ends at the second `:=`
    assert first.statement.endswith("0 ≤ x ^ 2 :=") and theorem_name(first.statement) == "_root_.aux"
    assert first.proof == " by\n  positivity -- first proof\n\n"  # up to the next command's `set_option ... in`
    assert theorem_name(last.statement) == "_root_.main" and last.statement.startswith(first.statement + first.proof)
    assert last.proof == " by\n  open Real in nlinarith [aux a, sq_nonneg a]\n\n"  # `end Foo` is not sent
    assert "/-- the main one -/" in last.statement


def test_a_doc_comment_stays_with_the_declaration_it_documents():
    plan = plan_snippet(
        "import Mathlib\ntheorem a : 1 = 1 := by\n  rfl -- done\n/-- b's doc -/\ntheorem b : 2 = 2 := by rfl"
    )
    assert plan.requests[0].proof == " by\n  rfl -- done\n"
    assert plan.requests[1].statement.endswith("/-- b's doc -/\ntheorem b : 2 = 2 :=")


@pytest.mark.parametrize(
    "code, check, reason, mark",
    [
        # sorry and its kin, found where they are (the answer's `sorries` entry points there)
        ("theorem x : 1 = 1 := by\n  sorry", "screen", "uses `sorry` (line 2)", Mark(2, 2, 5)),
        ("import Mathlib\nlemma x : True := by\n  admit", "screen", "uses `admit` (line 3)", Mark(3, 2, 5)),
        # commands a proof file has no use for: they can add axioms or change what Lean reports
        ("import Mathlib\naxiom f : False\ntheorem x : False := f", "screen", "`axiom`", Mark(2, 0, 5)),
        ("import Mathlib\n#eval 1\ntheorem x : 1 = 1 := rfl", "screen", "command `#eval`", None),
        ('import Mathlib\nmacro "t" : tactic => `(tactic| rfl)\ntheorem x : 1 = 1 := by t', "screen", "", None),
        ("import Mathlib\n@[implemented_by g] def f := 1\ntheorem x : 1 = 1 := rfl", "screen", "attribute", None),
        # kernel and compiler trust: in the header too
        (
            "import Mathlib\nset_option debug.skipKernelTC true\ntheorem x : 1 = 1 := by rfl",
            "screen",
            "`set_option debug.skipKernelTC`",
            Mark(2, 0, 10),
        ),
        ("import Mathlib\ntheorem x : 1 = 1 := by native_decide", "screen", "native_decide", Mark(2, 24, 13)),
        ("theorem x : 1 = 1 := by\n  exact Lean.ofReduceBool", "screen", "ofReduceBool", None),
        # nothing to check, or nothing the service can split
        ("import Mathlib\n#check Nat", "screen", "#check", None),
        ("import Mathlib\ndef f : ℕ := 1", "statement", "declares no `theorem`", None),
        (
            "import Mathlib\ntheorem x : 1 = 1\n  | _ => rfl",
            "snippet",
            "cannot find the name and the `:=`",
            Mark(2, 0, 7),
        ),
    ],
)
def test_decided_without_lean(code, check, reason, mark):
    plan = plan_snippet(code)
    assert plan.requests == () and plan.verdict.check == check and reason in plan.verdict.reason
    assert plan.verdict.status is (Status.REJECTED if check == "screen" else Status.ERROR)
    if mark is not None:
        assert plan.mark == mark


def test_honest_commands_pass_the_snippet_screen():
    code = (
        "import Mathlib\nimport Aesop\nset_option maxHeartbeats 400000\nopen Real\nnamespace Foo\n"
        "noncomputable def f (x : ℝ) : ℝ := x ^ 2\nvariable (y : ℝ)\n"
        "theorem f_nonneg (x : ℝ) : 0 ≤ f x := by\n  unfold f\n  positivity\nend Foo\n"
    )
    plan = plan_snippet(code)
    assert plan.verdict is None and plan.theorems == ("f_nonneg",)


def test_native_decide_passes_when_allowed_and_theorems_are_capped():
    assert plan_snippet("theorem x : 1 = 1 := by native_decide", allow_native=True).verdict is None
    many = "\n".join(f"theorem t{i} : {i} = {i} := rfl" for i in range(3))
    assert plan_snippet(many, max_theorems=2).verdict.check == "snippet"
    assert len(plan_snippet(many, max_theorems=3).requests) == 3


def test_positions_go_back_into_the_snippet_when_a_newline_was_put_after_colon_equals():
    code = "import Mathlib\ntheorem x : 1 = 1 :=by\n  simp\n  rfl"
    (request,) = plan_snippet(code).requests
    assert layout(request.header, request.statement, request.proof).command != request.statement + request.proof
    moved = [
        {"pos": {"line": 3, "column": 0}, "endPos": {"line": 3, "column": 2}},  # `by`, put on its own line
        {"pos": {"line": 5, "column": 2}},
        {"pos": {"line": 1, "column": 0}},
    ]
    assert snippet_positions(request, moved) == [
        {"pos": {"line": 2, "column": 20}, "endPos": {"line": 2, "column": 22}},
        {"pos": {"line": 4, "column": 2}},
        {"pos": {"line": 1, "column": 0}},
    ]
    assert snippet_positions(plan_snippet(GOEDEL).requests[0], moved) == moved  # nothing inserted: unchanged


# What kimina-client 0.2.1's ReplResponse.analyze() reads (kimina_client/models.py): `error` containing
# "timed out" -> timeout_error, other `error` -> server_error; a `message` response -> repl_error; an
# error-severity message -> lean_error; else a non-empty `sorries` -> sorry; else valid.
def kimina_status(result: dict) -> str:
    if "error" in result:
        return "timeout_error" if "timed out" in result["error"] else "server_error"
    response = result["response"]
    if "message" in response:
        return "repl_error"
    if any(m["severity"] == "error" for m in response.get("messages") or []):
        return "lean_error"
    return "sorry" if response.get("sorries") else "valid"


SORRY_WARNING = {
    "severity": "warning",
    "pos": {"line": 2, "column": 8},
    "endPos": {"line": 2, "column": 9},
    "data": "declaration uses 'sorry'",
}
ERROR = {
    "severity": "error",
    "pos": {"line": 3, "column": 2},
    "endPos": {"line": 3, "column": 6},
    "data": "linarith failed",
}
WARNINGS = [{"severity": "warning", "pos": {"line": 3, "column": 0}, "data": f"unused {i}"} for i in range(50)]


@pytest.mark.parametrize(
    "verdict, expected",
    [
        (Verdict(Status.PROVED, "proved", "axioms"), "valid"),
        (Verdict(Status.REJECTED, "lean: error at line 3", "lean", [ERROR]), "lean_error"),
        # Lean's error fell past the 50 messages a verdict keeps: the answer still says error
        (Verdict(Status.REJECTED, "lean: error at line 3", "lean", WARNINGS), "lean_error"),
        (
            Verdict(Status.REJECTED, "sorry: Lean warns that the declaration uses sorry", "sorry", [SORRY_WARNING]),
            "sorry",
        ),
        # what Lean itself let through: a hidden sorry, a foreign axiom
        (Verdict(Status.REJECTED, "axioms: uses sorry (sorryAx): sorryAx", "axioms"), "sorry"),
        (Verdict(Status.REJECTED, "axioms: depends on axioms outside the allowlist: Fake", "axioms"), "lean_error"),
        (Verdict(Status.TIMEOUT, "timeout: no verdict within 2 s", "timeout"), "timeout_error"),
        (Verdict(Status.TIMEOUT, "memory: the check exceeded its memory limit", "memory"), "timeout_error"),
        (Verdict(Status.ERROR, "infra: worker did not load its header: timed out", "infra"), "server_error"),
    ],
)
def test_each_verdict_maps_to_the_status_kimina_analyze_gives(verdict, expected):
    plan = plan_snippet("import Mathlib\ntheorem t : 1 = 1 := by\n  linarith")
    result = check_result("s1", plan, [verdict])
    assert kimina_status(result) == expected
    assert result["id"] == "s1" and result["verdict"]["status"] == verdict.status.value
    assert result["verdict"]["check"] == verdict.check and result["verdict"]["theorems"] == ["t"]
    if expected == "sorry":
        assert any("declaration uses 'sorry'" in m["data"] for m in result["response"]["messages"])
    backward = verify_result("s1", plan, [verdict])  # /verify: custom_id, the time inside the response
    assert backward["custom_id"] == "s1" and ("error" in backward) == ("error" in result)
    if "response" in backward:
        assert backward["response"]["time"] == result["time"]


@pytest.mark.parametrize(
    "code, expected",
    [
        ("theorem x : 1 = 1 := by\n  sorry", "sorry"),
        ("import Mathlib\naxiom f : False\ntheorem x : False := f", "lean_error"),
        ("import Mathlib\n#check Nat", "lean_error"),
        ("import Mathlib\ndef f : ℕ := 1", "server_error"),
    ],
)
def test_snippets_decided_without_lean_map_too(code, expected):
    plan = plan_snippet(code)
    assert kimina_status(check_result("x", plan, [])) == expected


def test_a_snippet_is_proved_only_when_every_theorem_is():
    plan = plan_snippet(TWO)
    proved, rejected = Verdict(Status.PROVED, "proved", "axioms"), Verdict(Status.REJECTED, "axioms: Fake", "axioms")
    timeout, error = Verdict(Status.TIMEOUT, "timeout", "timeout"), Verdict(Status.ERROR, "infra", "infra")
    assert snippet_verdict(plan, [proved, proved]) == (proved, 1)
    assert snippet_verdict(plan, [rejected, proved]) == (rejected, 0)
    assert snippet_verdict(plan, [error, timeout]) == (timeout, 1)
    assert snippet_verdict(plan, [rejected, timeout]) == (rejected, 0)
    result = check_result("two", plan, [rejected, proved])
    # the axiom finding is placed at the theorem it concerns
    assert result["response"]["messages"][-1]["pos"] == {"line": 4, "column": 6}


def test_the_axioms_checked_are_those_of_the_theorem_the_proof_completes():
    """A trusted statement may start with a finished auxiliary declaration: the axiom check is about
    the last one. With the first, a proof using a foreign axiom was accepted (aux was clean)."""
    statement = "theorem aux : True := trivial\ntheorem t (a b : ℝ) (h : a = b) : b = a := by\n"
    config = VerifierConfig(repl_command=[sys.executable, DOUBLE], workers=1, timeout=5.0, start_timeout=20.0)
    with LeanPool(config) as pool:
        verdict = pool.check_batch([ProofRequest(statement, "  linarith -- double:axiom=Fake", "import Mathlib\n")])[0]
    assert verdict.status is Status.REJECTED and "Fake" in verdict.reason
