"""What a running search has done so far: written by the search thread, read by the live display."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

from prover.verifier.verdict import Status, Verdict

_SPACES = re.compile(r"\s+")


def error_kind(verdict: Verdict) -> str:
    """A short label for why a proof failed, so that failures can be counted by kind.

    Lean's first error message (its first line: the rest is goal dumps that differ every time),
    else the verifier's reason, else the status.
    """
    for message in verdict.messages:
        if message.get("severity") == "error" and message.get("data"):
            first = _SPACES.sub(" ", str(message["data"]).strip().splitlines()[0])
            return first[:80]
    if verdict.reason:
        return _SPACES.sub(" ", verdict.reason.strip().splitlines()[0])[:80]
    return verdict.status.value


@dataclass
class SearchProgress:
    """Counters of one search. Mutate through the methods (they lock); read a ``snapshot()``."""

    strategy: str = ""
    budget: int = 0
    budget_unit: str = "samples"
    time_limit: float = 0.0
    samples: int = 0  # completions drawn from the model
    malformed: int = 0  # completions with no proof in them (e.g. an unclosed code fence)
    distinct: int = 0  # distinct proofs sent to the verifier
    verified: int = 0  # verdicts received
    statuses: Counter = field(default_factory=Counter)  # Status value -> count
    errors: Counter = field(default_factory=Counter)  # error_kind -> count
    rounds: int = 0
    expansions: int = 0  # best-first: proof states expanded
    tactics: int = 0  # best-first: tactics run in the backend
    frontier: int = 0  # best-first: states waiting to be expanded
    phase: str = "starting"
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def used(self) -> int:
        """Budget spent, in ``budget_unit``."""
        return self.expansions if self.budget_unit == "expansions" else self.samples

    def update(self, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(self, key, value)

    def add(self, **increments: int) -> None:
        with self._lock:
            for key, value in increments.items():
                setattr(self, key, getattr(self, key) + value)

    def record_verdict(self, verdict: Verdict) -> None:
        with self._lock:
            self.verified += 1
            self.statuses[verdict.status.value] += 1
            if verdict.status is not Status.PROVED:
                self.errors[error_kind(verdict)] += 1

    def record_error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] += 1

    def finish(self) -> None:
        with self._lock:
            self.finished = time.monotonic()

    def snapshot(self) -> SearchProgress:
        """A consistent copy that the search thread will not change under the reader."""
        with self._lock:
            return replace(self, statuses=Counter(self.statuses), errors=Counter(self.errors), _lock=threading.Lock())

    def to_json(self) -> dict[str, Any]:
        snap = self.snapshot()
        return {
            "strategy": snap.strategy,
            "budget": snap.budget,
            "budget_unit": snap.budget_unit,
            "used": snap.used,
            "samples": snap.samples,
            "malformed": snap.malformed,
            "distinct_proofs": snap.distinct,
            "verified": snap.verified,
            "statuses": dict(snap.statuses),
            "top_errors": snap.errors.most_common(5),
            "rounds": snap.rounds,
            "expansions": snap.expansions,
            "tactics": snap.tactics,
            "time": round(snap.elapsed, 3),
            "time_limit": snap.time_limit,
        }
