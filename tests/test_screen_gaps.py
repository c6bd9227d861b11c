"""Tactics that prove nothing or trust the compiler: for each, the screen or a Lean-side check (the
sorry warning, the axiom check) stops it. The Lean side is acted by tests/repl_double.py, which answers
them as Lean does (``stop`` / ``slim_check`` / ``plausible`` leave a sorry; a ``bv_decide`` proof
depends on ``Lean.ofReduceBool``)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from prover.verifier import LeanPool, ProofRequest, Status, VerifierConfig

DOUBLE = str(Path(__file__).with_name("repl_double.py"))
HEADER = "import Mathlib\n\nopen BigOperators Real Nat Topology Rat\n\n"
STATEMENT = "theorem gap (p q : Prop) (h : p ∨ q) : q ∨ p := by\n"

# (proof, allow_native, the check that stops it: screen, sorry or axioms; proved when allowed)
GAPS = [
    ("  stop\n  simp", False, "screen"),  # a tactic at the start of a line
    ("  cases h with\n  | inl hp => stop\n  | inr hq => exact Or.inl hq", False, "sorry"),  # after `=>`: Lean's
    ("  slim_check", False, "screen"),
    ("  plausible", False, "screen"),
    ("  bv_decide", False, "screen"),
    # allowed by policy: the compiler is trusted, and the axiom check allows what bv_decide depends on
    ("  bv_decide -- double:axiom=Lean.ofReduceBool", True, "proved"),
    ("  exact _root_.Lean.Elab.Term.elabTerm", False, "screen"),
]


@pytest.fixture(scope="module")
def pools():
    """One pool per policy, started on first use."""
    made: dict[bool, LeanPool] = {}

    def get(allow_native: bool) -> LeanPool:
        if allow_native not in made:
            made[allow_native] = LeanPool(
                VerifierConfig(
                    repl_command=[sys.executable, DOUBLE],
                    sandbox="none",
                    workers=1,
                    timeout=30,
                    allow_native=allow_native,
                )
            )
        return made[allow_native]

    yield get
    for pool in made.values():
        pool.close()


@pytest.mark.parametrize("proof, allow_native, stopped_by", GAPS, ids=[f"gap{i}" for i in range(len(GAPS))])
def test_each_gap_is_stopped(pools, proof, allow_native, stopped_by):
    verdict = pools(allow_native).check_batch([ProofRequest(STATEMENT, proof, HEADER, "gap")])[0]
    if stopped_by == "proved":
        assert verdict.status is Status.PROVED, verdict
    else:
        assert verdict.status is Status.REJECTED and verdict.check == stopped_by, verdict


def test_lean_side_catches_what_the_screen_lets_through_after_an_arrow():
    """The double acts the sorry `stop` leaves even where the screen cannot tell a tactic from a name."""
    from prover.verifier.screen import screen

    assert screen(GAPS[1][0]) is None
