"""Against real Lean + Mathlib + the REPL ($PROVER_LEAN_PROJECT, built by scripts/setup_lean.sh; the
self-test, `python -m prover.verify --selftest`, runs a longer battery and writes the REPL's answers).

The pool's layers end to end on miniF2F, and each Lean-side layer on its own through a raw REPL (the
static screen would otherwise stop these cheats before Lean sees them).
"""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from prover.verifier import DEFAULT_HEADER, LeanPool, ProofRequest, Status, VerifierConfig
from prover.verifier.judge import axioms_command, judge_axioms, judge_command, theorem_name
from prover.verifier.lean_project import repl_launch
from prover.verifier.repl import ReplProcess
from prover.verifier.sandbox import resolve_sandbox

pytestmark = pytest.mark.lean

ALLOW = {"propext", "Classical.choice", "Quot.sound"}


@pytest.fixture(scope="module")
def statement(shared_data_dir):
    data = pd.read_parquet(shared_data_dir / "minif2f_test.parquet")
    return data.set_index("theorem_full_name").loc["mathd_algebra_478", "theorem_statement"]


@pytest.fixture(scope="module")
def pool():
    with LeanPool(VerifierConfig(workers=2, timeout=300), headers=[DEFAULT_HEADER]) as pool:
        yield pool


def ask(pool, statement, proof):
    return pool.check_batch([ProofRequest(statement, proof, DEFAULT_HEADER, "mathd_algebra_478")])[0]


def test_correct_minif2f_proof_is_proved(pool, statement):
    verdict = ask(pool, statement, "  rw [h₂, h₃] at h₁\n  rw [h₁]\n  norm_num")
    assert verdict.status is Status.PROVED, verdict


def test_wrong_proof_is_rejected_by_lean(pool, statement):
    verdict = ask(pool, statement, "  rw [h₂] at h₁\n  exact h₁")
    assert verdict.status is Status.REJECTED and verdict.check == "lean", verdict
    assert verdict.messages and verdict.messages[0]["pos"]["line"] > DEFAULT_HEADER.count("\n")


def test_sorry_and_added_axiom_are_rejected_by_the_pool(pool, statement):
    assert ask(pool, statement, "  sorry").check == "screen"
    assert ask(pool, statement, "  norm_num\n\naxiom cheat : False").check == "screen"


def test_lean_side_layers_catch_what_the_screen_would(statement):
    """Layers 2 and 3 on their own: sorry, a new axiom, native_decide."""
    argv, env = repl_launch(VerifierConfig())

    async def go():
        repl = ReplProcess(argv, env=env, sandbox=resolve_sandbox("auto"))
        await repl.start()
        try:
            header = await repl.request({"cmd": DEFAULT_HEADER}, 600)
            env0 = header["env"]

            async def check(text, env=env0):
                answer = await repl.request({"cmd": text, "env": env}, 300)
                verdict = judge_command(answer)
                if verdict is None:
                    name = theorem_name(text)
                    axioms = await repl.request({"cmd": axioms_command(name), "env": answer["env"]}, 60)
                    verdict = judge_axioms(axioms, ALLOW, name)
                return verdict

            sorry = await check(statement + "  sorry")
            axiom = await check("axiom cheat_ax : False\ntheorem uses_ax : (1 : ℕ) = 2 := cheat_ax.elim")
            native = await check("theorem by_native : 2 ^ 10 = 1024 := by native_decide")
            honest = await check("theorem by_kernel : 2 ^ 10 = 1024 := by decide")
            # what the screen leaves to Lean: `stop` after `=>`; slim_check admits when it finds no counterexample
            stop = await check(
                "theorem by_stop (p q : Prop) (h : p ∨ q) : q ∨ p := by\n  cases h with\n"
                "  | inl hp => stop\n  | inr hq => exact Or.inl hq"
            )
            slim = await check("theorem by_slim (n : ℕ) : n + 0 = n := by slim_check")
            # a clean `Nat.twin` under the header's `open Nat` must not stand in for `twin`'s sorryAx
            decoy = await repl.request({"cmd": "theorem Nat.twin : (1 : ℕ) = 1 := rfl", "env": env0}, 300)
            twin = await check("theorem twin : (1 : ℕ) = 1 := by exact sorryAx _ false", decoy["env"])
            return sorry, axiom, native, honest, stop, slim, twin
        finally:
            await repl.close()

    sorry, axiom, native, honest, stop, slim, twin = asyncio.run(go())
    assert sorry.status is Status.REJECTED and sorry.check == "sorry"
    assert axiom.status is Status.REJECTED and "cheat_ax" in axiom.reason
    assert native.status is Status.REJECTED and "ofReduceBool" in native.reason
    assert honest.status is Status.PROVED
    for verdict in (stop, slim, twin):
        assert verdict.status is Status.REJECTED, verdict
