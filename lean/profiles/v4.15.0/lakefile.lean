import Lake
open Lake DSL

-- The Lean project proofs are checked in. Pin profile `v4.15.0`: Lean v4.15.0 with the REPL's tag
-- v4.15.0 and Mathlib's v4.15.0-patch1 (the Mathlib the REPL's own tests at that tag run on), the
-- Lean release Kimina-Prover-Preview was checked with. lake-manifest.json pins every dependency;
-- `bash scripts/setup_lean.sh --profile ...` switches profiles (lean/profiles/, docs/verifier.md).

package prover where
  -- no options: proofs are checked with Lean's defaults plus the header's own `set_option` lines

require mathlib from git
  "https://github.com/leanprover-community/mathlib4" @ "v4.15.0-patch1"

require REPL from git
  "https://github.com/leanprover-community/repl" @ "v4.15.0"

-- `lake build` compiles the proof header, so a broken Mathlib shows up here, not in the workers.
@[default_target]
lean_lib ProverHeader where
  srcDir := "lean"
