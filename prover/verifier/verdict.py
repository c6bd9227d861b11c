"""What goes into a verifier and what comes out of it."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class Status(str, Enum):
    PROVED = "proved"
    REJECTED = "rejected"  # the proof is wrong (or cheats): reward 0
    TIMEOUT = "timeout"  # the proof ran out of time: a verdict, reward 0
    ERROR = "error"  # the checker failed, not the proof: never a reward, never counted as wrong


@dataclass(frozen=True)
class ProofRequest:
    """A proof to check. ``header`` and ``statement`` are trusted; only ``proof`` comes from the model."""

    statement: str
    proof: str
    header: str = ""
    name: str = ""

    def key(self) -> str:
        """Cache key: the same (header, statement, proof) is checked once."""
        h = hashlib.sha256()
        for part in (self.header, self.statement, self.proof):
            h.update(part.encode())
            h.update(b"\x00")
        return h.hexdigest()


@dataclass
class Verdict:
    status: Status
    reason: str = ""  # a human-readable why, e.g. "screen: uses `sorry`"
    check: str = ""  # the layer that decided: screen | lean | sorry | axioms | timeout | infra | exact
    messages: list[dict[str, Any]] = field(default_factory=list)  # Lean's messages, as the REPL sent them
    time: float = 0.0  # seconds spent checking (0 for a cache hit)
    cached: bool = False

    @property
    def proved(self) -> bool:
        return self.status is Status.PROVED

    def reward(self) -> float | None:
        """1 for proved, 0 for rejected or timed out, None when the checker itself failed."""
        if self.status is Status.ERROR:
            return None
        return 1.0 if self.proved else 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Verdict:
        return cls(**{**d, "status": Status(d["status"])})
