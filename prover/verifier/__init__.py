"""Proof checking: the sandboxed Lean REPL pool and its soundness layers."""

from prover.verifier.base import Verifier
from prover.verifier.verdict import ProofRequest, Status, Verdict

__all__ = ["ProofRequest", "Status", "Verdict", "Verifier"]
