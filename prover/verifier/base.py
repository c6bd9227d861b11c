"""The interface every verifier offers: the Lean REPL pool, its Ray front, the synthetic checker."""

from __future__ import annotations

import abc
import asyncio
from collections.abc import Iterable, Sequence

from prover.verifier.verdict import ProofRequest, Verdict


class Verifier(abc.ABC):
    """Checks proofs. A context manager; ``close`` is idempotent and leaves no process behind."""

    @abc.abstractmethod
    async def check(self, request: ProofRequest) -> Verdict:
        """One verdict for one request; a wrong proof is a verdict, not an exception."""

    async def check_many(self, requests: Sequence[ProofRequest]) -> list[Verdict]:
        """Verdicts in input order."""
        return list(await asyncio.gather(*(self.check(r) for r in requests)))

    def check_batch(self, requests: Sequence[ProofRequest]) -> list[Verdict]:
        """Blocking form of ``check_many`` for synchronous callers (reward functions, scripts).

        Implementations that own a background event loop override this to submit there.
        """
        return asyncio.run(self.check_many(requests))

    def warm(self, headers: Iterable[str]) -> None:
        """Get ready for proofs under ``headers`` (start workers, load the header); a no-op by default."""

    def close(self) -> None:
        """Release workers. Safe to call twice."""

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
