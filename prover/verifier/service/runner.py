"""Admission and checking: the bounded queue in front of the verifier, and the drain at shutdown.

A request is admitted whole or not at all: its proofs count against ``max_queue`` from admission
until their verdicts are reached (a caller that leaves does not free its share early; its proofs
still finish and land in the verdict cache). Each proof is its own task on the verifier, so one slow
proof holds up nobody else's answer, and a request's proofs are never cancelled: a check may be
shared with another request that asked for the same proof.

At shutdown, requests already admitted get ``shutdown_grace`` seconds; whatever is unfinished then
is answered with an ERROR verdict (no reward, checked again later), so every accepted request gets
an answer. New requests are refused with 503.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prover.verifier.base import Verifier
from prover.verifier.errors import PoolClosedError, VerifierError
from prover.verifier.service.metrics import Metrics
from prover.verifier.verdict import ProofRequest, Status, Verdict

logger = logging.getLogger(__name__)


class Refused(Exception):
    """The service cannot take the request now (503): ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Runner:
    """Runs admitted proofs on ``verifier`` (from the service's event loop)."""

    def __init__(self, verifier: Verifier, max_queue: int, shutdown_grace: float, metrics: Metrics):
        self.verifier = verifier
        self.max_queue = max_queue
        self.shutdown_grace = shutdown_grace
        self.metrics = metrics
        metrics.queue_limit = max_queue
        self.depth = 0
        self.draining = False
        self._expired = asyncio.Event()  # set shutdown_grace seconds after the drain began
        self._tasks: set[asyncio.Task] = set()

    def admit(self, n: int) -> None:
        """Count ``n`` proofs in, or raise ``Refused`` (queue full, or shutting down)."""
        if self.draining:
            raise Refused("the service is shutting down")
        if self.depth + n > self.max_queue:
            raise Refused(f"queue full: {self.depth} proofs waiting, {n} more would pass the limit of {self.max_queue}")
        self.depth += n
        self.metrics.queue_depth = self.depth

    def begin_drain(self) -> None:
        """Refuse new requests; answer the admitted ones within ``shutdown_grace`` seconds."""
        if self.draining:
            return
        self.draining = True
        asyncio.get_running_loop().call_later(self.shutdown_grace, self._expired.set)
        logger.info("draining: %d proofs admitted, answering them within %g s", self.depth, self.shutdown_grace)

    async def run(self, requests: list[ProofRequest]) -> list[Verdict]:
        """Verdicts in input order for ``requests`` (already admitted)."""
        tasks = [asyncio.ensure_future(self._one(r, time.monotonic())) for r in requests]
        for task in tasks:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        expired = asyncio.ensure_future(self._expired.wait())
        try:
            pending = set(tasks)
            while pending and not expired.done():
                _, pending = await asyncio.wait(pending | {expired}, return_when=asyncio.FIRST_COMPLETED)
                pending.discard(expired)
        finally:
            expired.cancel()
        return [
            t.result()
            if t.done()
            else Verdict(Status.ERROR, "infra: the service shut down before this proof's verdict was reached", "infra")
            for t in tasks
        ]

    async def _one(self, request: ProofRequest, admitted: float) -> Verdict:
        try:
            verdict = await self.verifier.check(request)
        except PoolClosedError as exc:
            verdict = Verdict(Status.ERROR, f"infra: the verifier closed: {exc}", "infra")
        except VerifierError as exc:
            verdict = Verdict(Status.ERROR, f"infra: {exc}", "infra")
        except Exception as exc:  # a bug must not sink the other proofs, nor ever count as a proof
            logger.exception("internal error while checking %s", request.name or "a proof")
            verdict = Verdict(Status.ERROR, f"infra: internal error: {type(exc).__name__}: {exc}", "infra")
        finally:
            self.depth -= 1
            self.metrics.queue_depth = self.depth
        self.metrics.verdict(verdict.status.value, time.monotonic() - admitted)
        return verdict
