"""The default strategy: whole proofs sampled in rounds from the theorem's prompt."""

from __future__ import annotations

from prover.search.engine import Found, SearchContext, Strategy


class WholeProofStrategy(Strategy):
    name = "whole"

    def run(self, ctx: SearchContext) -> Found | None:
        prompt = ctx.prompt()
        while ctx.stop_reason() is None and (n := min(ctx.config.round_size, ctx.budget_left())) > 0:
            completions = ctx.sample([prompt], n, ctx.config.max_tokens)[0]
            proofs = [p for p in ctx.extract([c.text for c in completions]) if p is not None]
            if found := ctx.first_proved(proofs):
                return found
        return None
