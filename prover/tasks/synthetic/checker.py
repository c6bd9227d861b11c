"""The exact checker of the synthetic task: the analogue of Lean for ``start S goal G steps B``.

A proof is ``op value op value ...``: each operation is followed by the value it claims to reach,
as a Lean proof states each intermediate ``have``. The checker replays the operations and rejects
a wrong claim, an unknown token, a value out of range, more than B steps, or a last value that is
not the goal. It is pure and instant, so it runs inline: no workers, no event loop.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence

from prover.tasks.synthetic.generator import OPS, Theorem, apply_op
from prover.verifier.base import Verifier
from prover.verifier.verdict import ProofRequest, Status, Verdict

_STATEMENT = re.compile(r"start (\d+) goal (\d+) steps (\d+)")


def parse_statement(text: str) -> Theorem:
    """``start S goal G steps B`` (surrounding whitespace ignored) as a Theorem; ValueError otherwise."""
    m = _STATEMENT.fullmatch(" ".join(text.split()))
    if not m:
        raise ValueError(f"not a synthetic theorem: {text!r}; expected 'start S goal G steps B' with integers")
    start, goal, budget = (int(g) for g in m.groups())
    if start < 1:
        raise ValueError(f"start must be at least 1 (every operation must increase the value), got {start}")
    return Theorem(start, goal, budget)


def _rejected(reason: str) -> Verdict:
    return Verdict(Status.REJECTED, reason=reason, check="exact")


def check_proof(theorem: Theorem, proof: str, max_value: int) -> Verdict:
    """Replay ``proof`` on ``theorem``: PROVED or REJECTED with the first problem found."""
    tokens = proof.split()
    if len(tokens) % 2:
        return _rejected(f"malformed: {len(tokens)} tokens, expected op/value pairs")
    steps = len(tokens) // 2
    if steps > theorem.budget:
        return _rejected(f"over budget: {steps} steps > {theorem.budget}")
    value = theorem.start
    for i in range(steps):
        op, claim = tokens[2 * i], tokens[2 * i + 1]
        if op not in OPS:
            return _rejected(f"step {i + 1}: unknown operation {op!r}; allowed: {' '.join(OPS)}")
        if not (claim.isascii() and claim.isdigit()):
            return _rejected(f"step {i + 1}: {claim!r} is not a value")
        value = apply_op(op, value)
        if value > max_value:
            return _rejected(f"step {i + 1}: {op} gives {value}, above the largest value {max_value}")
        if int(claim) != value:
            return _rejected(f"step {i + 1}: claims {claim} but {op} gives {value}")
    if value != theorem.goal:
        return _rejected(f"ends at {value}, not at the goal {theorem.goal}")
    return Verdict(Status.PROVED, reason=f"{steps} steps", check="exact")


class SyntheticVerifier(Verifier):
    """``Verifier`` over ``check_proof``; a statement that does not parse is an ERROR verdict
    (the trusted side is broken, not the proof)."""

    def __init__(self, max_value: int):
        self.max_value = max_value

    def _check(self, request: ProofRequest) -> Verdict:
        t0 = time.perf_counter()
        try:
            theorem = parse_statement(request.statement)
        except ValueError as exc:
            return Verdict(Status.ERROR, reason=str(exc), check="statement")
        verdict = check_proof(theorem, request.proof, self.max_value)
        verdict.time = time.perf_counter() - t0
        return verdict

    async def check(self, request: ProofRequest) -> Verdict:
        return self._check(request)

    def check_batch(self, requests: Sequence[ProofRequest]) -> list[Verdict]:
        # Inline: callable from inside a running event loop (asyncio.run would refuse).
        return [self._check(r) for r in requests]
