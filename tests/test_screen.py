"""The static screen: every cheat is rejected with its own reason, every honest proof passes."""

from __future__ import annotations

import pytest

from prover.verifier.judge import theorem_name
from prover.verifier.screen import screen, screen_result, tokenize
from prover.verifier.split import layout, split_header

# (proof, a word the rejection reason must contain)
CHEATS = [
    ("  sorry", "sorry"),
    ("  nlinarith [sq_nonneg (a - b)]\n  admit", "admit"),
    ("  exact sorryAx _ false", "sorryAx"),
    ("  exact «sorryAx» _ false", "sorryAx"),  # guillemets
    ("  exact _root_.sorryAx _ false", "sorryAx"),
    ("  exact ѕorry", "look-alike"),  # Cyrillic dze: not a Lean name character
    ("  exact ｓｏｒｒｙ", "look-alike"),  # full-width letters
    ("  exact sοrry", "sorry"),  # Greek omicron *is* a Lean name character: folded to o
    ("  exact «ѕorryAx» _ false", "sorryAx"),  # look-alike inside guillemets
    ("  exact so\u200brry", "invisible"),  # zero-width space
    ("  simp -- \u202e hidden", "invisible"),  # bidi override, even in a comment
    ("  stop\n  simp", "stop"),
    ("  native_decide", "native_decide"),
    ("  decide +native", "native"),
    ("  exact Lean.ofReduceBool _ _ rfl", "ofReduceBool"),
    ("  apply?", "apply?"),
    ("  simp\n\ntheorem extra : False := sorry", "theorem"),
    ("  simp\nlemma extra : 1 = 1 := rfl", "lemma"),
    ("  simp\naxiom cheat : False", "axiom"),
    ("  simp\ndef f := 1", "def"),
    ("  simp\ninstance : Inhabited False := ⟨sorry⟩", "instance"),
    ("  simp\nexample : True := trivial", "example"),
    ("  simp\n#print axioms foo", "#print"),
    ("  simp\n#eval IO.println 1", "#eval"),
    ("  simp\n#exit", "#exit"),
    ('  simp\nelab "#print" "axioms" _x:ident : command => pure ()', "elab"),
    ('  simp\nmacro "cheat" : tactic => `(tactic| sorry)', "macro"),
    ('  simp\nsyntax "cheat" : tactic', "syntax"),
    ('  simp\nnotation "ok" => sorry', "notation"),
    ("  simp\nattribute [simp] foo", "attribute"),
    ("  simp\nopen Foo in\ntheorem x : True := trivial", "theorem"),
    ("  simp\nopen Classical", "open"),
    ("  simp\nset_option maxHeartbeats 0", "without `in`"),
    ("  set_option debug.skipKernelTC true in\n  simp", "debug.skipKernelTC"),
    ("  set_option «debug».skipKernelTC true in\n  simp", "debug.skipKernelTC"),
    ("  set_option kernel.check false in simp", "kernel.check"),
    ("  simp\n@[implemented_by foo] def g := 1", "attribute"),
    ("  exact (unsafeCast 0 : False)", "unsafe"),
    ("  run_tac Lean.Elab.Tactic.evalTactic (← `(tactic| trivial))", "run_tac"),
    ("  exact by_elab do Lean.Meta.mkSorry (← Lean.Elab.Term.getExpectedType) false", "by_elab"),
    ("  open Lean in exact mkIdent default", "meta"),
    ("  simp\nrun_cmd Lean.modifyEnv id", "run_cmd"),
    ('  exact ("sorryAx" : String).length', "string literal"),
    ("  exact `sorryAx", "name literal"),
    ("  exact 'a'", "character literal"),
    ("  simp /- never closed", "unterminated block comment"),
    ("  simp /- /- nested -/ still open", "unterminated block comment"),
    ("  simp /- /- -/ -/ sorry", "sorry"),  # nesting ends where Lean ends it
    ("  simp /-/ sorry -/ admit", "admit"),
    ("  rw [h] <--sorry", "ambiguous"),
    ("  simp\nend", "end"),
    ("  simp\nnamespace Foo", "namespace"),
    ("  exact h\n  where aux : False := sorry", "where"),
    ("  simp\nprivate theorem t : True := trivial", "private"),
    ("  simp\nnoncomputable section", "noncomputable"),
    ("  simp\ninitialize pure ()", "initialize"),
    ("  simp\nvariable (x : Nat)", "variable"),
    ("  simp\nuniverse u", "universe"),
    # Known gaps, closed (issue 14): each stopped by the screen; Lean's sorry checks (stop, slim_check,
    # plausible: they leave sorryAx) and the axiom check (bv_decide: Lean.ofReduceBool) back it up.
    ("  exact _root_.Lean.Elab.Term.elabTerm", "meta"),
    ("  run_tac _root_.Lean.Elab.Tactic.evalTactic default", "run_tac"),
    ("  exact (_root_.IO.println 1)", "meta"),
    ("  intro x\n  stop\n  simp", "stop"),
    ("  constructor <;> stop", "stop"),
    ("  constructor\n  · stop", "stop"),
    ("  cases h with\n  | inl h => simp\n  | inr h =>\n    stop", "stop"),
    ("  slim_check", "slim_check"),
    ("  plausible", "plausible"),
    ("  bv_decide", "bv_decide"),
    ('  bv_check "proof.lrat"', "bv_check"),
    ("  decide (config := {native := true})", "native"),
]

HONEST = [
    "  nlinarith [sq_nonneg (a - b), sq_nonneg (a + b), mul_pos ha hb]",
    "  norm_num",
    "  norm_num [Nat.factorial]",
    "  omega",
    "  simp [Finset.sum_range_succ]",
    "  field_simp\n  ring",
    "  induction n with\n  | zero => simp\n  | succ k ih =>\n    rw [Finset.sum_range_succ, ih]\n    ring",
    "  rcases h with ⟨x, hx, rfl⟩\n  exact ⟨x, hx⟩",
    "  have h₁ : 0 < x := by linarith\n  have h₂ : x ^ 2 = 4 := by nlinarith\n  nlinarith [h₁, h₂]",
    "  calc a + b = b + a := by ring\n    _ = c := by linarith",
    "  intro x hx\n  obtain ⟨k, hk⟩ := hx\n  omega",
    "  constructor <;> intro h <;> linarith",
    "  rw [div_eq_iff (by norm_num : (3 : ℝ) ≠ 0)] at h\n  linarith",
    "  -- the key step: sorry is not used here\n  nlinarith [sq_nonneg (x - 1)]",
    "  /- a comment that says theorem, axiom, #eval and sorry -/\n  simp",
    "  /- nested /- comment -/ still a comment: admit -/\n  decide",
    "  interval_cases x <;> simp_all",
    "  positivity",
    "  exact fun x => by ring_nf",
    "  refine ⟨?_, ?_⟩\n  · norm_num\n  · norm_num",
    "  by_contra! h\n  push_neg at h\n  nlinarith",
    "  set_option maxRecDepth 10000 in\n  norm_num",
    "  set_option maxHeartbeats 400000 in\n  nlinarith [sq_nonneg (a - 1)]",
    "  open Real in\n  rw [Real.sqrt_eq_iff]",
    "  have := h 1\n  simp at this\n  linarith [this]",
    "  apply le_of_sub_nonneg\n  have h' : 0 ≤ (a - b) ^ 2 := sq_nonneg _\n  nlinarith [h']",
    "  norm_num [Finset.sum_range_succ, Nat.choose]",
    "  ext x\n  simp only [Set.mem_image, Set.mem_preimage]\n  exact ⟨fun h => h, fun h => h⟩",
    "  simp [f '' s]",
    "  simp [f ⁻¹' s]",
    "  rw [show (4 : ℝ) = 2 * 2 by norm_num]\n  ring",
    "  cases' h with x hx\n  exact hx",
    "  unfold f at h\n  linarith",
    "  decide",
    "  exact Nat.le_of_lt_succ (by omega)",
    "  have hπ : Real.pi > 3 := Real.pi_gt_three\n  linarith",
    "  simp only [Nat.odd_iff, Nat.even_iff] at *\n  omega",
    "  nlinarith [sq_nonneg (a - b), sq_abs a, abs_nonneg b, mul_self_nonneg (a + b - 1)]",
    "  rintro ⟨h1, h2⟩\n  exact ⟨h2, h1⟩",
    "  exact ⟨2, by norm_num⟩",
    "  simp_all [Nat.succ_eq_add_one]\n  ring_nf\n  omega",
    "  aesop",
    "  gcongr\n  exact h",
    "  conv => lhs; rw [mul_comm]",
    "  exact (h.1).trans h.2",
    "  nlinarith [pow_pos hx 2, pow_pos hx 3]  -- ends with a comment and no newline",
    # Known wrongful refusals, fixed (issue 14): `scoped` after `open`, variables named stop / native.
    "  open scoped BigOperators in\n  simp [Finset.sum_range_succ]",
    "  open scoped Real in\n  nlinarith [Real.pi_gt_three]",
    "  intro stop hstop\n  exact hstop",
    "  obtain ⟨native, h⟩ := hx\n  exact h",
    "  have h := fun (stop : ℕ) => stop + 1\n  simp [h]",
    "  exact foo.stop",
]


@pytest.mark.parametrize("proof, why", CHEATS, ids=[f"cheat{i}" for i in range(len(CHEATS))])
def test_cheat_is_rejected(proof, why):
    reason = screen(proof)
    assert reason is not None, f"cheat passed the screen: {proof!r}"
    assert why.lower() in reason.lower(), reason


@pytest.mark.parametrize("proof", HONEST, ids=[f"honest{i}" for i in range(len(HONEST))])
def test_honest_proof_passes(proof):
    assert screen(proof) is None


def test_native_is_allowed_only_when_configured():
    assert screen("  native_decide") is not None
    assert screen("  native_decide", allow_native=True) is None
    assert screen("  decide +native", allow_native=True) is None
    assert screen("  bv_decide", allow_native=True) is None


def test_rejections_name_their_rule():
    assert screen_result("  native_decide").rule == "native"
    assert screen_result("  simp\n\ntheorem extra : True := trivial").rule == "command"
    assert screen_result("  stop").rule == "sorry"
    assert screen_result("  exact _root_.Lean.Expr.bvar 0").rule == "meta"
    assert screen_result("  simp") is None


def test_tables_are_large_enough():
    assert len(CHEATS) >= 30 and len(HONEST) >= 30


def test_tokenizer_follows_lean_identifiers():
    # A subscript continues an identifier, λ does not start one, and `h.1` is a projection.
    tokens, error = tokenize("fun x₁ => λ h.1")
    assert [t.text for t in tokens] == ["fun", "x₁", "=", ">", "λ", "h", ".", "1"] and error is None
    assert tokenize("«a b».c")[0][0].parts == ("a b", "c")


def test_theorem_name_from_trusted_statement():
    # anchored at the root: `#print axioms` must not also resolve `Nat.mathd_algebra_478` under `open Nat`
    assert (
        theorem_name("/-- doc: theorem fake -/\ntheorem mathd_algebra_478 (b : ℝ) : b = b := by\n")
        == "_root_.mathd_algebra_478"
    )
    assert theorem_name("-- lemma no\nlemma «odd name» : True := by") == "_root_.«odd name»"
    assert theorem_name("example : True := by") is None


def test_split_and_layout_positions():
    code = "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen Real\n\n/-- doc -/\ntheorem t : 1 = 1 := by\n"
    parts = split_header(code)
    assert parts.header.endswith("open Real\n\n") and parts.body.startswith("/-- doc -/")
    assert parts.header_lines == 7
    lay = layout("import Mathlib", "theorem t : 1 = 1 := by", "simp\n  rfl")
    assert lay.text == "import Mathlib\ntheorem t : 1 = 1 := by\nsimp\n  rfl"
    assert (lay.header_lines, lay.proof_line, lay.proof_column) == (1, 3, 0)
    assert lay.shift_position({"line": 2, "column": 2}) == {"line": 3, "column": 2}
    assert lay.proof_position(4, 2) == (2, 2)
    assert lay.proof_position(2, 0) is None
