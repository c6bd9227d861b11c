"""The search's REPL backend against the REPL double acting tag v4.9.0 (the pinned REPL) and main: a
proof is finished only when the REPL says "Completed", or, from a REPL too old to say, when the whole
tactic script checks in command mode (the recorded answers behind this: tests/test_golden.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from prover.data.problem import Problem
from prover.search.backends import ReplBackend
from prover.verifier.config import VerifierConfig

DOUBLE = str(Path(__file__).with_name("repl_double.py"))
HEADER = "import Mathlib\n\n"
PROBLEM = Problem("t", "theorem t (x : ℕ) : x + 0 = x := by\n", HEADER)
# `exact ?_` closes nothing: Lean shows no goals but the term keeps a metavariable, and the whole
# script fails in command mode ("(kernel) declaration has metavariables", app_type_mismatch.expected.out).
MVARS = "exact ?_ /- double:error=(kernel)_declaration_has_metavariables_'t' -/"
GRAPH = {
    "theorems": {"t": "root"},
    "states": {
        "root": {
            "goals": ["x : ℕ\n⊢ x + 0 = x"],
            "tactics": {"simp": "done", "intro": "mid", "ring": {"error": "ring failed"}, MVARS: {"mvars": True}},
        },
        "mid": {"goals": ["⊢ True"], "tactics": {"trivial": "done"}},
        "done": {"goals": []},
    },
}


@pytest.fixture(params=["v4.9.0", "main"])
def backend(request, tmp_path):
    (tmp_path / "graph.json").write_text(json.dumps(GRAPH))
    command = [sys.executable, DOUBLE, "--graph", str(tmp_path / "graph.json"), "--version", request.param]
    backend = ReplBackend.from_config(VerifierConfig(repl_command=command, sandbox="none"), timeout=10)
    yield backend
    backend.close()


def test_a_proof_is_finished_when_the_script_checks(backend):
    root = backend.start(PROBLEM)
    assert backend.run_tactic(root, "simp").kind == "finished"
    mid = backend.run_tactic(root, "intro")
    assert mid.kind == "state" and mid.state.goals == "⊢ True"
    assert backend.run_tactic(mid.state, "trivial").kind == "finished"


def test_no_goals_with_metavariables_left_is_not_a_proof(backend):
    """Defect 4: at v4.9.0 the REPL answers `goals: []` and nothing else; the script check catches it."""
    outcome = backend.run_tactic(backend.start(PROBLEM), MVARS)
    assert outcome.kind == "error", outcome
    assert "metavariable" in outcome.error


def test_a_sorry_gives_up_and_a_failing_tactic_is_an_error(backend):
    """Defect 4: `sorry` answers `goals: []` with a `sorries` entry; a failing tactic a new state with
    `goals: []` and the error (golden/repl/*/tactic_mode_sorry, invalid_tactic)."""
    root = backend.start(PROBLEM)
    assert backend.run_tactic(root, "sorry").kind == "given_up"
    failed = backend.run_tactic(root, "ring")
    assert failed.kind == "error" and failed.error == "ring failed"
