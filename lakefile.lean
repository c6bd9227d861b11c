import Lake
open Lake DSL

-- The Lean project proofs are checked in: Lean, Mathlib and the REPL at one pinned version.
-- Lean v4.9.0 with its Mathlib, as DeepSeek-Prover-V1.5 used. Mathlib and the REPL tag their
-- releases `vX.Y.Z` after the Lean release they build with, so the three pins move together:
-- `bash scripts/setup_lean.sh --lean v4.15.0` rewrites them (see docs/verifier.md).

package prover where
  -- no options: proofs are checked with Lean's defaults plus the header's own `set_option` lines

require mathlib from git
  "https://github.com/leanprover-community/mathlib4.git" @ "v4.9.0"

require REPL from git
  "https://github.com/leanprover-community/repl.git" @ "v4.9.0"

-- `lake build` compiles the proof header, so a broken Mathlib shows up here, not in the workers.
@[default_target]
lean_lib ProverHeader where
  srcDir := "lean"
