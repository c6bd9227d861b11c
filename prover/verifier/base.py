"""The interface every verifier offers: the Lean REPL pool, its Ray front, the synthetic checker."""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import threading
from collections.abc import Iterable, Sequence

from prover.verifier.errors import PoolClosedError
from prover.verifier.verdict import ProofRequest, Verdict

CANCEL_GRACE = 10.0  # seconds an interrupted blocking call waits for its cancelled work to wind down


async def _signalling(coro, finished: threading.Event):
    """``coro``, setting ``finished`` when it is over (also when cancelled)."""
    try:
        return await coro
    finally:
        finished.set()


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

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LoopThreadVerifier(Verifier):
    """A verifier whose work lives on its own asyncio loop in a daemon thread, so it serves synchronous
    callers (``check_batch``, ``submit``) and ``async`` callers on any event loop alike.

    Subclasses call ``_start_loop`` and set ``_pending`` (the bound on unfinished ``submit`` calls) in
    ``__init__``, ``_stop_loop`` in ``close``, and implement ``_check`` / ``_check_many`` as coroutines
    run on the loop.
    """

    _closed = True  # until _start_loop
    _pending: threading.BoundedSemaphore

    def _start_loop(self, thread_name: str) -> None:
        self._closed = False
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=thread_name, daemon=True)
        self._thread.start()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()

    @abc.abstractmethod
    async def _check(self, request: ProofRequest) -> Verdict:
        """One verdict, on the verifier's loop."""

    @abc.abstractmethod
    async def _check_many(self, requests: list[ProofRequest]) -> list[Verdict]:
        """Verdicts in input order, on the verifier's loop."""

    async def check(self, request: ProofRequest) -> Verdict:
        return await self._on_loop(self._check(request))

    async def check_many(self, requests: Sequence[ProofRequest]) -> list[Verdict]:
        return await self._on_loop(self._check_many(list(requests)))

    def check_batch(self, requests: Sequence[ProofRequest]) -> list[Verdict]:
        """Verdicts in input order; blocks the calling thread (works inside a running event loop too)."""
        return self._run(self._check_many(list(requests)))

    def submit(self, request: ProofRequest) -> concurrent.futures.Future:
        """Queue one request; blocks while ``max_pending`` submitted requests are unfinished (backpressure)."""
        if self._closed:
            raise PoolClosedError(f"the {type(self).__name__} is closed")
        self._pending.acquire()
        try:
            future = asyncio.run_coroutine_threadsafe(self._check(request), self._loop)
        except BaseException:
            self._pending.release()
            raise
        future.add_done_callback(lambda _: self._pending.release())
        return future

    def _run(self, coro):
        """Run ``coro`` on the loop and wait for it (from any thread but the loop's own).

        If the caller is interrupted while it waits (Ctrl-C), the work is cancelled: requests still
        waiting for a worker are dropped and running checks stopped, so the next call does not queue
        behind a batch nobody wants. The interrupt is re-raised once that is done.
        """
        if self._closed:
            coro.close()
            raise PoolClosedError(f"the {type(self).__name__} is closed")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError(f"blocking {type(self).__name__} call from its own thread; await check() instead")
        finished = threading.Event()
        future = asyncio.run_coroutine_threadsafe(_signalling(coro, finished), self._loop)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                future.cancel()  # cancels the task on the loop
                finished.wait(CANCEL_GRACE)  # a second Ctrl-C ends this wait early
            raise

    async def _on_loop(self, coro):
        """Await ``coro`` on the verifier's loop from whichever loop the caller runs on."""
        if self._closed:
            coro.close()
            raise PoolClosedError(f"the {type(self).__name__} is closed")
        try:
            if asyncio.get_running_loop() is self._loop:
                return await coro
        except RuntimeError:
            pass
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))
