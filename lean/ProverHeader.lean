-- The imports of the header every proof is checked under (DEFAULT_HEADER in
-- prover/verifier/config.py). `lake build` compiles this module, which proves that the header's
-- imports resolve before any REPL worker starts.
import Mathlib
import Aesop
