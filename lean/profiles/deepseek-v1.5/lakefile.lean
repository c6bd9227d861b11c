import Lake
open Lake DSL

-- The Lean project proofs are checked in. Pin profile `deepseek-v1.5` (the default): exactly the
-- environment DeepSeek-Prover-V1.5 was trained and evaluated in, which Goedel-Prover V1 and V2 also
-- pin: its `mathlib4` submodule, xinhjBrant/mathlib4 at 2f65ba7f (upstream Mathlib d1d1e4b7 of
-- 2024-06-12 plus one commit that adds DeepSeek's REPL fork and moves batteries and Cli), on Lean
-- v4.9.0-rc1. lake-manifest.json pins every dependency; `bash scripts/setup_lean.sh --profile ...`
-- switches profiles (lean/profiles/, docs/verifier.md).

package prover where
  -- no options: proofs are checked with Lean's defaults plus the header's own `set_option` lines

require mathlib from git
  "https://github.com/xinhjBrant/mathlib4.git" @ "2f65ba7f1a9144b20c8e7358513548e317d26de1"

-- DeepSeek's fork of the REPL (upstream 7df77c0 plus their AST extraction); it prints answers
-- without flushing, so setup adds a flush (scripts/patch_repl_flush.py).
require REPL from git
  "https://github.com/xinhjBrant/repl.git" @ "3334a97b268ecc67beb36a75787f7e831208a724"

-- `lake build` compiles the proof header, so a broken Mathlib shows up here, not in the workers.
@[default_target]
lean_lib ProverHeader where
  srcDir := "lean"
