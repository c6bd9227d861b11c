"""Theorems of the synthetic task, their splits, and proofs drawn from a skewed distribution.

A theorem is ``start S goal G steps B``: turn S into G with at most B operations. Operations come
in two styles: additive (+1 +2 +3) and multiplicative (*2 *3). Every operation increases a
positive value, so a proof ends the first time it reaches G and the proofs of a theorem are the
increasing paths from S to G; dynamic programming counts them exactly. With B steps, additive
proofs close gaps up to 3B; with fewer steps than that, only a multiplication gets there. That
gives the two kinds of theorem the unlikeliness mechanism needs:

- ``easy``: G - S <= 3B. Many additive proofs, often multiplicative ones too.
- ``rare``: G - S > 3B but G is reachable in B steps: only proofs with a multiplication work.

Everything is a pure function of the settings and a seed, so every run sees the same theorems.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from functools import cache

ADDITIVE_OPS = ("+1", "+2", "+3")
MULTIPLICATIVE_OPS = ("*2", "*3")
OPS = ADDITIVE_OPS + MULTIPLICATIVE_OPS
END = "qed"  # the proof's end marker, the analogue of Lean's closing code fence
KINDS = ("easy", "rare")


def apply_op(op: str, value: int) -> int:
    """The value after ``op``; raises KeyError on an unknown operation."""
    k = int(op[1:])
    if op in ADDITIVE_OPS:
        return value + k
    if op in MULTIPLICATIVE_OPS:
        return value * k
    raise KeyError(op)


@dataclass(frozen=True)
class Theorem:
    start: int
    goal: int
    budget: int

    @property
    def statement(self) -> str:
        return f"start {self.start} goal {self.goal} steps {self.budget}"

    @property
    def name(self) -> str:
        return f"syn_{self.start}_{self.goal}_{self.budget}"

    @property
    def kind(self) -> str:
        return "easy" if 0 < self.goal - self.start <= 3 * self.budget else "rare"


@cache  # (value, goal, steps, style): ~10^5 entries for the defaults
def _paths(value: int, goal: int, steps: int, additive_only: bool) -> int:
    """Number of proofs from ``value`` to ``goal`` in at most ``steps`` operations."""
    if value == goal:
        return 1
    if value > goal or steps == 0:
        return 0
    ops = ADDITIVE_OPS if additive_only else OPS
    return sum(_paths(apply_op(op, value), goal, steps - 1, additive_only) for op in ops)


def count_proofs(theorem: Theorem) -> dict[str, int]:
    """Correct proofs of each style: ``additive`` (only + ops) and ``multiplicative`` (at least one *)."""
    total = _paths(theorem.start, theorem.goal, theorem.budget, False)
    additive = _paths(theorem.start, theorem.goal, theorem.budget, True)
    return {"additive": additive, "multiplicative": total - additive}


@cache
def _step_weights(value: int, goal: int, steps_left: int, mode: str) -> tuple[int, ...]:
    """For each op, the number of ``mode`` proofs that continue with it: ``additive`` (+ only),
    ``multiplicative`` (a * must still come) or ``any``."""
    weights = []
    for op in OPS:
        nxt = apply_op(op, value)
        if mode == "additive":
            w = _paths(nxt, goal, steps_left - 1, True) if op in ADDITIVE_OPS else 0
        elif mode == "multiplicative" and op in ADDITIVE_OPS:
            w = _paths(nxt, goal, steps_left - 1, False) - _paths(nxt, goal, steps_left - 1, True)
        else:
            w = _paths(nxt, goal, steps_left - 1, False)
        weights.append(w)
    return tuple(weights)


def sample_proof(theorem: Theorem, style: str, rng: random.Random) -> list[str]:
    """A proof of ``style`` drawn uniformly among that style's correct proofs, as tokens
    ``op value op value ...`` (without the end marker). Raises ValueError when the style has none."""
    if style not in ("additive", "multiplicative"):
        raise ValueError(f"unknown proof style {style!r}; choose additive or multiplicative")
    if count_proofs(theorem)[style] == 0:
        raise ValueError(f"{theorem.statement} has no {style} proof")
    goal, value, steps_left = theorem.goal, theorem.start, theorem.budget
    mode = style
    tokens: list[str] = []
    while value != goal:
        op = rng.choices(OPS, weights=_step_weights(value, goal, steps_left, mode))[0]
        if mode == "multiplicative" and op in MULTIPLICATIVE_OPS:
            mode = "any"  # the multiplication has come: every completion counts now
        value = apply_op(op, value)
        steps_left -= 1
        tokens += [op, str(value)]
    return tokens


def all_theorems(max_value: int, start_max: int, min_budget: int, max_budget: int, min_gap: int) -> list[Theorem]:
    """Every provable theorem with 1 <= start <= start_max, min_budget <= steps <= max_budget and
    start + min_gap <= goal <= start + 3 * max_budget (and <= max_value).

    Goals stay within additive reach of the largest budget, so rare theorems (a budget too small
    for additive proofs) use the same numbers as easy ones: they differ only in the ``steps`` token,
    which keeps the model from telling them apart by the size of their numbers.
    """
    out = []
    for start in range(1, start_max + 1):
        for goal in range(start + min_gap, min(max_value, start + 3 * max_budget) + 1):
            for budget in range(min_budget, max_budget + 1):
                if _paths(start, goal, budget, False):
                    out.append(Theorem(start, goal, budget))
    return out


def split_theorems(
    theorems: list[Theorem], seed: int, test_size: int, train_size: int, rare_fraction: float
) -> dict[str, list[Theorem]]:
    """Disjoint ``test`` and ``train`` sets with ``rare_fraction`` rare theorems each, and ``pool``:
    every theorem not in test (where the base model's supervised data comes from).

    The test set is drawn first, so growing ``train_size`` never changes it.
    """
    rng = random.Random(seed)
    by_kind = {kind: [t for t in theorems if t.kind == kind] for kind in KINDS}
    for kind in KINDS:
        rng.shuffle(by_kind[kind])
    splits: dict[str, list[Theorem]] = {}
    taken = {kind: 0 for kind in KINDS}
    for name, size in (("test", test_size), ("train", train_size)):
        n_rare = round(size * rare_fraction)
        chosen = []
        for kind, n in (("rare", n_rare), ("easy", size - n_rare)):
            pool = by_kind[kind][taken[kind] : taken[kind] + n]
            if len(pool) < n:
                raise ValueError(
                    f"only {len(by_kind[kind])} {kind} theorems exist with these settings; {name} needs "
                    f"{n} more after {taken[kind]} taken: lower test_size/train_size or widen max_value/start_max"
                )
            chosen += pool
            taken[kind] += n
        rng.shuffle(chosen)
        splits[name] = chosen
    test = set(splits["test"])
    splits["pool"] = [t for t in theorems if t not in test]
    return splits
