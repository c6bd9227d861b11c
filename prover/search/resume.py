"""Truncate-and-resume (DeepSeek-Prover-V1.5): when a sampled proof fails, keep what came before
Lean's first error in it and sample continuations of that prefix in the next round.

Verdicts carry Lean's positions as (line, column) in the checked text, header + statement + proof,
with 1-based lines and 0-based columns counted in characters (code points), as Python counts them.
"""

from __future__ import annotations

import heapq
from typing import Any

from prover.search.engine import Found, SearchContext, Strategy
from prover.verifier.split import layout
from prover.verifier.verdict import Verdict


def position_to_offset(text: str, line: int, column: int) -> int:
    """Character offset of Lean's (1-based line, 0-based column) in ``text``."""
    lines = text.split("\n")
    if not 1 <= line <= len(lines):
        raise ValueError(f"line {line} is outside the text ({len(lines)} lines)")
    return sum(len(row) + 1 for row in lines[: line - 1]) + min(column, len(lines[line - 1]))


def first_error_offset(proof: str, messages: list[dict[str, Any]], header: str, statement: str) -> int | None:
    """Offset in ``proof`` of the first error that lies inside it; None when no error does.

    Errors before the proof (``unsolved goals`` sits on the statement's ``by``) do not count:
    they mean every tactic ran and goals were left, so the whole proof is a good prefix. The
    checked text is laid out as the verifier lays it out (``prover.verifier.split.layout``).
    """
    where = layout(header, statement, proof)
    offsets = []
    for m in messages:
        pos = m.get("pos")
        if m.get("severity") != "error" or not pos:
            continue
        inside = where.proof_position(int(pos["line"]), int(pos["column"]))
        if inside is not None:
            try:
                offsets.append(position_to_offset(proof, *inside))
            except ValueError:  # past the proof's end (e.g. "unexpected end of input")
                offsets.append(len(proof))
    return min(offsets) if offsets else None


def resume_prefix(proof: str, verdict: Verdict, header: str, statement: str) -> str | None:
    """The part of a failed proof to continue from: everything before Lean's first error in it.

    None when the verdict carries no located error (a timeout, a screen rejection): nothing tells
    where the proof went wrong.
    """
    if verdict.proved or not any(m.get("severity") == "error" and m.get("pos") for m in verdict.messages):
        return None
    offset = first_error_offset(proof, verdict.messages, header, statement)
    return proof if offset is None else proof[:offset]


class TruncateResumeStrategy(Strategy):
    """Rounds of samples from a fresh start and from the longest error-free prefixes found so far."""

    name = "resume"

    def run(self, ctx: SearchContext) -> Found | None:
        base = ctx.prompt()
        header, statement = ctx.problem.header, ctx.problem.statement
        seen = {""}
        pending: list[tuple[int, int, str]] = []  # (-len(prefix), order, prefix): a heap, longest first
        while ctx.stop_reason() is None and (total := min(ctx.config.round_size, ctx.budget_left())) > 0:
            prefixes = [""] + [
                heapq.heappop(pending)[2] for _ in range(min(len(pending), ctx.config.resume.width - 1, total - 1))
            ]
            per_prompt = total // len(prefixes)
            outputs = ctx.sample([base + p for p in prefixes], per_prompt, ctx.config.max_tokens)
            proofs = []
            for prefix, completions in zip(prefixes, outputs):
                proofs += [p for p in ctx.extract([prefix + c.text for c in completions]) if p is not None]
            for proof, verdict in zip(proofs, ctx.verify(proofs)):
                if verdict.proved:
                    return Found(proof, verdict)
                prefix = resume_prefix(proof, verdict, header, statement)
                if prefix and prefix.strip() and prefix not in seen:
                    seen.add(prefix)
                    heapq.heappush(pending, (-len(prefix), len(seen), prefix))
        return None
