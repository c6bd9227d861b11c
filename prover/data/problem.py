"""The unit of work everywhere: one theorem to prove."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """A theorem: ``statement`` is trusted text that ends with ``:= by``; the model writes what follows.

    ``header`` (imports, options, opens) is trusted too and is checked once per verifier worker.
    """

    name: str
    statement: str
    header: str = ""
    informal: str = ""
    split: str = ""
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
