"""``RemoteVerifier``: the ``Verifier`` interface over HTTP, served by ``python -m prover.verify serve``.

A trainer, evaluator or search on one machine checks its proofs on a service elsewhere
(``--verifier.backend http --verifier.url http://host:8000``) and gets the verdicts ``check_batch``
gives there: ``POST /v1/verify`` takes ``ProofRequest``s and answers ``Verdict``s in input order.
Batches larger than the service takes at once are split (its limit comes from ``/health``).

Wrong proofs, timeouts and worker faults come back as verdicts, decided by the service. Broken
infrastructure raises instead: a busy service (503) is waited for as its Retry-After says, but one
that cannot be reached after ``RETRIES`` tries raises ``ServiceUnavailableError``, and a refused API
key raises ``LeanSetupError`` when the verifier is made. The key comes from ``$LEAN_SERVER_API_KEY``
(the variable kimina-client reads), not from the config, which run directories record.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import fields

from prover.verifier.base import LoopThreadVerifier
from prover.verifier.config import VerifierConfig
from prover.verifier.errors import LeanSetupError, PoolClosedError, VerifierError
from prover.verifier.verdict import ProofRequest, Verdict

logger = logging.getLogger(__name__)

API_KEY_ENV = "LEAN_SERVER_API_KEY"
RETRIES = 5  # tries per batch when the service does not answer (waits 0.5, 1, 2, 4 s between them)
CONNECT_TIMEOUT = 10.0  # seconds; reading has no limit: the service answers within its own timeouts
MAX_RETRY_AFTER = 60.0  # seconds: the longest a 503's Retry-After is obeyed at once
_VERDICT_FIELDS = frozenset(f.name for f in fields(Verdict))


class ServiceUnavailableError(VerifierError):
    """The verification service could not be reached (or kept failing) at its URL."""


def _import_httpx():
    try:
        import httpx
    except ImportError as exc:
        raise LeanSetupError("verifier.backend=http needs httpx: pip install -e .[service]") from exc
    return httpx


class RemoteVerifier(LoopThreadVerifier):
    """Checks proofs on the service at ``config.url``; ``check``/``check_many`` (async), ``check_batch``
    / ``submit`` (sync), ``close()``. ``warm`` is the service's business (``service.warm_headers``)."""

    def __init__(self, config: VerifierConfig, headers: Iterable[str] = ()):
        if not config.url:
            raise LeanSetupError("verifier.backend=http needs verifier.url, e.g. http://127.0.0.1:8000")
        self.config = config
        self.url = config.url.rstrip("/")
        self._httpx = _import_httpx()
        self._pending = threading.BoundedSemaphore(config.max_pending or 8 * config.workers)
        self._queued: list[tuple[ProofRequest, asyncio.Future]] = []  # single checks waiting for the next POST
        self._start_loop("remote-verifier")
        try:
            self._client = self._run(self._open(os.environ.get(API_KEY_ENV)))
            self._batch = self._run(self._handshake())
        except BaseException:
            self.close()
            raise

    async def _open(self, key: str | None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return self._httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=self._httpx.Timeout(None, connect=CONNECT_TIMEOUT),
            limits=self._httpx.Limits(max_connections=64, max_keepalive_connections=64),
        )

    async def _handshake(self) -> int:
        """The service's batch limit; fails now, not mid-run, when it is down or refuses the key."""
        try:
            health = await self._client.get("/health")
            stats = await self._client.get("/stats")  # needs the key when the service has one
        except self._httpx.TransportError as exc:
            raise ServiceUnavailableError(
                f"cannot reach the verification service at {self.url}: {type(exc).__name__}: {exc}"
            ) from exc
        if stats.status_code == 401:
            raise LeanSetupError(f"the verification service at {self.url} refused the API key: set ${API_KEY_ENV}")
        if health.status_code != 200 or stats.status_code != 200:
            raise ServiceUnavailableError(
                f"the verification service at {self.url} is not ready: "
                f"/health answered {health.status_code} {health.text[:200]}"
            )
        try:
            return int(health.json()["limits"]["max_batch"])
        except (ValueError, KeyError, TypeError) as exc:
            raise LeanSetupError(
                f"{self.url} is not a prover verification service (its /health has no "
                f"limits.max_batch): {health.text[:200]}"
            ) from exc

    # ------------------------------------------------------------------ checking

    async def _check(self, request: ProofRequest) -> Verdict:
        """Single checks made in the same turn of the loop share one POST (``submit`` and concurrent
        ``check`` callers cost a round trip per batch, not per proof)."""
        future = self._loop.create_future()
        self._queued.append((request, future))
        if len(self._queued) == 1:
            self._loop.call_soon(self._flush)
        try:
            return await future
        except asyncio.CancelledError:
            if self._closed:
                raise PoolClosedError("the RemoteVerifier was closed while the request waited") from None
            raise

    def _flush(self) -> None:
        queued, self._queued = self._queued, []
        for start in range(0, len(queued), self._batch):
            chunk = queued[start : start + self._batch]
            task = self._loop.create_task(self._post([r for r, _ in chunk]))
            task.add_done_callback(functools.partial(self._deliver, [f for _, f in chunk]))

    def _deliver(self, futures: list[asyncio.Future], task: asyncio.Task) -> None:
        if task.cancelled():
            error: BaseException | None = PoolClosedError("the RemoteVerifier was closed while the request waited")
        else:
            error = task.exception()
        for k, future in enumerate(futures):
            if future.done():  # its caller gave up
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(task.result()[k])

    async def _check_many(self, requests: list[ProofRequest]) -> list[Verdict]:
        chunks = [requests[i : i + self._batch] for i in range(0, len(requests), self._batch)]
        try:
            answers = await asyncio.gather(*(self._post(chunk) for chunk in chunks))
        except asyncio.CancelledError:
            if self._closed:  # close() cancelled the request: say so, as the pool does
                raise PoolClosedError("the RemoteVerifier was closed while the request waited") from None
            raise
        return [v for answer in answers for v in answer]

    async def _post(self, chunk: list[ProofRequest]) -> list[Verdict]:
        payload = {
            "requests": [
                {"statement": r.statement, "proof": r.proof, "header": r.header, "name": r.name} for r in chunk
            ]
        }
        failures = 0
        while True:
            if self._closed:
                raise PoolClosedError("the RemoteVerifier is closed")
            try:
                response = await self._client.post("/v1/verify", json=payload)
            except self._httpx.TransportError as exc:
                failures += 1
                if failures >= RETRIES:
                    raise ServiceUnavailableError(
                        f"the verification service at {self.url} failed {RETRIES} times in "
                        f"a row: {type(exc).__name__}: {exc}"
                    ) from exc
                logger.warning("verification service at %s: %s; trying again", self.url, exc)
                await asyncio.sleep(0.5 * 2 ** (failures - 1))
                continue
            if response.status_code == 503:  # queue full or shutting down: come back later
                await asyncio.sleep(self._retry_after(response))
                continue
            return self._verdicts(response, len(chunk))

    @staticmethod
    def _retry_after(response) -> float:
        try:
            return min(max(float(response.headers.get("retry-after", 1)), 0.1), MAX_RETRY_AFTER)
        except ValueError:
            return 1.0

    def _verdicts(self, response, expected: int) -> list[Verdict]:
        if response.status_code == 401:
            raise LeanSetupError(f"the verification service at {self.url} refused the API key: set ${API_KEY_ENV}")
        if response.status_code != 200:
            raise VerifierError(
                f"the verification service at {self.url} refused a batch of {expected}: "
                f"HTTP {response.status_code}: {response.text[:500]}"
            )
        try:
            verdicts = [
                Verdict.from_json({k: v for k, v in d.items() if k in _VERDICT_FIELDS})
                for d in response.json()["verdicts"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise VerifierError(
                f"the verification service at {self.url} answered something that is not a list of "
                f"verdicts: {response.text[:300]}"
            ) from exc
        if len(verdicts) != expected:
            raise VerifierError(
                f"the verification service at {self.url} answered {len(verdicts)} verdicts for {expected} proofs"
            )
        return verdicts

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=30)
        self._stop_loop()

    async def _shutdown(self) -> None:
        """Fail what is in flight (PoolClosedError), then close the connections."""
        me = asyncio.current_task()
        pending = [t for t in asyncio.all_tasks() if t is not me]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        client = getattr(self, "_client", None)
        if client is not None:
            await client.aclose()
