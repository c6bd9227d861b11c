"""Tactic-level best-first search: expand the proof state with the highest cumulative log-prob by
sampling next tactics, until a tactic leaves no goals; that proof is then checked as a whole by the
verifier, and only a proof the verifier accepts is reported.

The model writes one tactic per line after the theorem and the tactics so far, the same prompt a
whole-proof model continues, so no separate tactic model is needed.
"""

from __future__ import annotations

import heapq
import itertools
import re
from dataclasses import dataclass, field

from prover.search.backends import ProofState
from prover.search.engine import Found, SearchContext, SearchError, Strategy

# Tactics that cheat or run code in the (unsandboxed) tactic backend; the final whole-proof check
# screens the full proof again.
_FORBIDDEN = re.compile(
    r"\b(sorry|admit|native_decide|run_tac|run_cmd|set_option|ofReduceBool)\b|#eval|#exit|\bdecide\s*\+native"
)


def tactic_of(text: str) -> str | None:
    """The tactic on the first line of a completion, or None when the model wrote no tactic there."""
    line = text.split("\n", 1)[0].strip()
    return line if line and not line.startswith("```") else None


def join_tactics(statement: str, tactics: tuple[str, ...] | list[str]) -> str:
    """The whole proof made of ``tactics``, one per line, indented under the statement's ``by``."""
    lead = "" if statement.endswith("\n") else "\n"
    return lead + "".join(f"  {t}\n" for t in tactics)


@dataclass(order=True)
class _Node:
    priority: float  # minus the cumulative log-prob: heapq pops the smallest
    order: int
    state: ProofState = field(compare=False)
    tactics: tuple[str, ...] = field(compare=False)


class BestFirstStrategy(Strategy):
    name = "best-first"
    budget_unit = "expansions"

    def run(self, ctx: SearchContext) -> Found | None:
        if ctx.backend is None:
            raise SearchError("best-first search needs a proof-state backend (best_first.backend)")
        settings = ctx.config.best_first
        statement = ctx.problem.statement
        base = ctx.prompt()
        order = itertools.count()
        root = ctx.backend.start(ctx.problem)
        frontier = [_Node(0.0, next(order), root, ())]
        seen = {root.goals}
        while frontier and ctx.stop_reason() is None and ctx.budget_left() > 0:
            node = heapq.heappop(frontier)
            ctx.progress.add(expansions=1)
            completions = ctx.sample(
                [base + join_tactics(statement, node.tactics)],
                settings.tactics_per_expansion,
                settings.tactic_max_tokens,
                stop=["\n"],
            )[0]
            candidates: dict[str, float] = {}  # tactic -> best log-prob among its samples
            for c in completions:
                if (tactic := tactic_of(c.text)) is None:
                    ctx.progress.add(malformed=1)
                else:
                    candidates[tactic] = max(candidates.get(tactic, float("-inf")), c.logprob_sum)
            ctx.progress.update(phase="running tactics")
            for tactic, logprob in sorted(candidates.items(), key=lambda kv: -kv[1]):
                if _FORBIDDEN.search(tactic):
                    ctx.progress.record_error("tactic: forbidden")
                    continue
                outcome = ctx.backend.run_tactic(node.state, tactic)
                ctx.progress.add(tactics=1)
                tactics = node.tactics + (tactic,)
                if outcome.kind == "finished":
                    proof = join_tactics(statement, tactics)
                    if found := ctx.first_proved([proof]):
                        return found
                elif outcome.kind == "state" and outcome.state.goals not in seen and len(tactics) < settings.max_depth:
                    seen.add(outcome.state.goals)
                    heapq.heappush(frontier, _Node(node.priority - logprob, next(order), outcome.state, tactics))
                elif outcome.kind in ("error", "given_up"):
                    ctx.progress.record_error(
                        f"tactic: {outcome.error.splitlines()[0][:70] if outcome.error else outcome.kind}"
                    )
            ctx.progress.update(frontier=len(frontier))
        if not frontier:
            ctx.note = "no proof state left to expand"
        return None
