"""The local verifier: a pool of sandboxed REPL workers and the soundness layers around them.

``LeanPool(config)`` owns a background thread running an asyncio loop; every REPL process belongs to
that loop, so the pool serves synchronous callers (``check_batch``, ``submit``) and ``async`` callers
on any event loop alike. Workers are grouped by header (each REPL checks its header once, as env 0,
and every proof on top of it); the pool hands out a worker in this order of preference: an idle one
with the same header, a new one while under ``workers``, an idle one of another header (evicted),
else the request waits its turn (FIFO).

A check: cache -> static screen -> name from the trusted statement -> ``statement + proof`` on env 0
(layer 2: errors, sorries, the sorry warning) -> ``#print axioms <name>`` as a separate request on the
resulting env (layer 3). A timeout kills the worker's process group (verdict timeout); a crash, EOF
or unreadable answer restarts the worker and retries once, then gives an ERROR verdict (reward None).
Workers retire after ``max_checks_per_worker`` checks, above ``memory_limit_mb``, or after a check
that wrote to their sandbox's RAM-backed /tmp, and are replaced in the background so the pool stays
warm. A header that cannot load (it does not compile, its worker crashes twice in a row, or it
outlasts ``start_timeout``) is remembered: every request under it gets ``error/header`` at once,
until the pool is restarted.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import logging
import re
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import replace

from prover.verifier import sandbox as sandbox_mod
from prover.verifier.base import LoopThreadVerifier
from prover.verifier.cache import VerdictCache
from prover.verifier.config import VerifierConfig
from prover.verifier.errors import (
    LeanSetupError,
    PoolClosedError,
    ReplCrashed,
    ReplError,
    ReplTimeout,
    WorkerStartError,
)
from prover.verifier.judge import axioms_command, clean_messages, judge_axioms, judge_command, theorem_name
from prover.verifier.lean_project import lean_version_id, repl_launch
from prover.verifier.repl import ReplProcess, sweep_stale_scratch
from prover.verifier.screen import screen
from prover.verifier.split import Layout, layout
from prover.verifier.verdict import ProofRequest, Status, Verdict

logger = logging.getLogger(__name__)

WATCHDOG_INTERVAL = 0.1  # seconds between memory samples of busy workers
SHUTDOWN_GRACE = 20.0  # seconds close() waits for running checks and process reaping before cancelling
AXIOMS_TIMEOUT = 60.0  # `#print axioms` only walks the proof term: seconds, unless something is wrong
_OOM = re.compile(r"out of memory|MemoryError|std::bad_alloc|Cannot allocate memory", re.I)
_live_pools: weakref.WeakSet[LeanPool] = weakref.WeakSet()


class HeaderError(WorkerStartError):
    """The header cannot be loaded (it does not compile, or it was given up): every proof under it
    gets an ERROR verdict."""


class Worker:
    """One REPL with one header loaded as its env 0."""

    _ids = itertools.count()

    def __init__(self, header: str, repl: ReplProcess):
        self.id = next(self._ids)
        self.header = header
        self.repl = repl
        self.env0: int | None = None
        self.checks = 0

    async def start(self, timeout: float) -> None:
        await self.repl.start()
        try:
            answer = await self.repl.request({"cmd": self.header}, timeout)
        except ReplError as exc:
            raise WorkerStartError(f"worker did not load its header: {exc.reason}", exc.stderr) from exc
        if "env" not in answer:
            raise WorkerStartError(f"worker answered the header with {str(answer)[:300]}")
        errors = [m for m in answer.get("messages") or [] if isinstance(m, dict) and m.get("severity") == "error"]
        if errors:
            raise HeaderError(f"header does not compile: {' | '.join(str(m.get('data'))[:300] for m in errors[:3])}")
        self.env0 = answer["env"]
        self.repl.snapshot_tree()

    async def command(self, text: str, timeout: float) -> dict:
        self.checks += 1
        answer = await self.repl.request({"cmd": text, "env": self.env0}, timeout)
        if "env" not in answer:  # e.g. {"message": "Unknown environment."}: the REPL lost its state
            self.repl.kill()
            raise ReplCrashed(f"REPL answered without an environment: {str(answer.get('message', answer))[:300]}")
        return answer

    async def axioms(self, name: str, env: int, timeout: float) -> dict:
        return await self.repl.request({"cmd": axioms_command(name), "env": env}, timeout)


class LeanPool(LoopThreadVerifier):
    """Local REPL pool. ``LeanPool(config)``, then ``check`` / ``check_many`` (async), ``check_batch``
    / ``submit`` (sync), ``warm(headers)``, ``close()`` (idempotent; also a context manager)."""

    def __init__(self, config: VerifierConfig | None = None, headers: Iterable[str] = ()):
        self.config = config = config or VerifierConfig()
        self._argv, self._env = repl_launch(config)  # raises LeanSetupError with the fix
        try:
            self._policy = sandbox_mod.policy_for(config, self._argv, self._env)  # warns when auto falls back
        except ValueError as exc:
            raise LeanSetupError(str(exc)) from exc
        logger.info("REPL workers are confined so: %s", self._policy.describe())
        sweep_stale_scratch(config.scratch_dir)
        self._allowlist = config.effective_axiom_allowlist()
        policy = f"{sorted(self._allowlist)}|native={config.allow_native}|{lean_version_id(config)}"
        self._cache = VerdictCache(config.cache_path, policy)
        self._inflight: dict[str, asyncio.Future] = {}
        self._idle: dict[str, deque[Worker]] = {}
        self._busy: set[Worker] = set()
        self._live = 0  # workers starting, idle or busy
        self._headers: OrderedDict[str, None] = OrderedDict()  # LRU of headers kept warm
        self._bad_headers: dict[str, str] = {}  # header -> why it cannot load (kept until the pool restarts)
        self._start_crashes: dict[str, int] = {}  # header -> workers that crashed loading it, in a row
        self._waiters: deque[tuple[str, asyncio.Future]] = deque()
        self._tasks: set[asyncio.Task] = set()
        self._repls: set[ReplProcess] = set()  # every process started and not yet closed
        self._pending = threading.BoundedSemaphore(config.max_pending or 8 * config.workers)
        self._start_loop("lean-pool")
        if config.check_memory_mb:
            self._loop.call_soon_threadsafe(self._spawn_task, self._watchdog())
        _live_pools.add(self)
        headers = list(headers)
        if headers:
            try:
                self.warm(headers)
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------ public API

    def warm(self, headers: Iterable[str]) -> None:
        """Start workers for ``headers`` (spread evenly) and load them; raises WorkerStartError on failure."""
        self._run(self._warm([layout(h, "", "").header for h in headers]))

    def stats(self) -> dict:
        """Live, idle and busy workers, cache size (for progress displays), and the sandbox in use."""
        return {
            "live": self._live,
            "idle": sum(len(q) for q in self._idle.values()),
            "busy": len(self._busy),
            "waiting": len(self._waiters),
            "cached": len(self._cache),
            "headers": list(self._headers),
            "bad_headers": dict(self._bad_headers),
            "sandbox": self._policy.describe(),
        }

    def close(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("LeanPool.close() called from the pool's own thread")
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=SHUTDOWN_GRACE + 30)
        except (concurrent.futures.TimeoutError, RuntimeError) as exc:
            logger.error("pool shutdown did not finish cleanly: %s", exc)
        finally:
            self._stop_loop()
            self._cache.close()
            _live_pools.discard(self)

    # ------------------------------------------------------------------ plumbing

    def _spawn_task(self, coro) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ checking

    async def _check_many(self, requests: list[ProofRequest]) -> list[Verdict]:
        return list(await asyncio.gather(*(self._check(r) for r in requests)))

    async def _check(self, request: ProofRequest) -> Verdict:
        key = self._cache.key(request)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if key in self._inflight:  # the same proof is being checked right now
            shared = self._inflight[key]
            await asyncio.wait({shared})  # raises only if this request is cancelled, never cancels the check
            if shared.cancelled():  # its own caller gave it up (Ctrl-C): check it for this one
                return await self._check(request)
            verdict = shared.result()
            return replace(verdict, cached=True, time=0.0, messages=list(verdict.messages))
        future = self._loop.create_future()
        self._inflight[key] = future
        try:
            try:
                verdict = await self._check_uncached(request)
            except (PoolClosedError, asyncio.CancelledError):
                raise
            except Exception as exc:  # a bug here must not sink the whole batch, nor ever count as a proof
                logger.exception("internal error while checking %s", request.name or key[:12])
                verdict = Verdict(Status.ERROR, f"infra: internal error: {type(exc).__name__}: {exc}", "infra")
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError) and not self._closed:
                future.cancel()  # a request sharing this check runs it itself
            else:
                future.set_exception(
                    PoolClosedError("the pool closed") if isinstance(exc, asyncio.CancelledError) else exc
                )
                future.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        finally:
            del self._inflight[key]
        self._cache.put(key, verdict)
        future.set_result(verdict)
        return verdict

    async def _check_uncached(self, request: ProofRequest) -> Verdict:
        reason = screen(request.proof, allow_native=self.config.allow_native)
        if reason:
            return Verdict(Status.REJECTED, f"screen: {reason}", "screen")
        name = theorem_name(request.statement)
        if name is None:
            return Verdict(
                Status.ERROR,
                "statement: no `theorem <name>` or `lemma <name>` in the trusted statement "
                "(the axiom check needs the name)",
                "statement",
            )
        lay = layout(request.header, request.statement, request.proof)
        start = time.monotonic()
        last: ReplError | None = None
        for attempt in (1, 2):
            if lay.header in self._bad_headers:
                break
            try:
                worker = await self._acquire(lay.header)
            except ReplError as exc:  # the worker did not start; a header given up is answered below
                last = exc
                continue
            verdict, last = await self._run_on(worker, lay, name, attempt)
            if verdict is not None:
                return verdict
        if lay.header in self._bad_headers:
            return Verdict(
                Status.ERROR, f"header: {self._bad_headers[lay.header]}", "header", time=time.monotonic() - start
            )
        return Verdict(
            Status.ERROR,
            f"infra: {last.reason if last else 'no worker'}"
            + (f" (stderr: {last.stderr[-300:]})" if last and last.stderr else ""),
            "infra",
            time=time.monotonic() - start,
        )

    async def _run_on(
        self, worker: Worker, lay: Layout, name: str, attempt: int
    ) -> tuple[Verdict | None, ReplError | None]:
        """One attempt on ``worker``: a verdict, or (None, the infrastructure failure) to retry."""
        start = time.monotonic()
        try:
            answer = await worker.command(lay.command, self.config.timeout)
            messages = clean_messages(answer.get("messages"), lay)
            verdict = judge_command(answer, lay)
            if verdict is None:
                axioms = await worker.axioms(name, answer["env"], min(self.config.timeout, AXIOMS_TIMEOUT))
                verdict = judge_axioms(axioms, self._allowlist)
        except ReplTimeout:
            self._discard(worker)
            return Verdict(
                Status.TIMEOUT,
                f"timeout: no verdict within {self.config.timeout:g} s",
                "timeout",
                time=time.monotonic() - start,
            ), None
        except ReplError as exc:
            self._discard(worker)
            oom = worker.repl.oom or bool(_OOM.search(exc.stderr))
            if worker.repl.oom or (oom and attempt == 2):
                limit = (
                    f"{self.config.check_memory_mb} MB resident"
                    if worker.repl.oom
                    else f"address space {self.config.address_space_mb} MB"
                )
                return Verdict(
                    Status.TIMEOUT,
                    f"memory: the check exceeded its memory limit ({limit})",
                    "memory",
                    time=time.monotonic() - start,
                ), None
            logger.warning("worker %d failed (attempt %d): %s", worker.id, attempt, exc)
            return None, exc
        except BaseException:
            self._discard(worker)  # cancelled mid-request: its answer would arrive out of turn
            raise
        memory, wrote = worker.repl.footprint()
        limit = self.config.check_memory_mb
        if limit and memory > limit:  # what it wrote to RAM-backed /tmp counts as memory
            self._discard(worker)
            return Verdict(
                Status.TIMEOUT,
                f"memory: the check ended above its memory limit ({limit} MB, resident plus RAM-backed /tmp)",
                "memory",
                time=time.monotonic() - start,
            ), None
        self._release(worker, memory, wrote)
        return replace(verdict, messages=messages, time=time.monotonic() - start), None

    # ------------------------------------------------------------------ workers

    async def _acquire(self, header: str) -> Worker:
        self._touch(header)
        while True:
            if self._closed:
                raise PoolClosedError("the pool is closed")
            if header in self._bad_headers:
                raise HeaderError(self._bad_headers[header])
            idle = self._idle.get(header)
            if idle:
                worker = idle.popleft()
                self._busy.add(worker)
                return worker
            if self._live < self.config.workers:
                worker = await self._start_worker(header)
                self._busy.add(worker)
                return worker
            victim = self._evictable(header)
            if victim is not None:
                self._retire(victim)
                continue
            waiter = self._loop.create_future()
            self._waiters.append((header, waiter))
            try:
                worker = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None and waiter.result():
                    self._release(waiter.result())  # handed a worker just as we were cancelled
                else:
                    try:
                        self._waiters.remove((header, waiter))
                    except ValueError:
                        pass
                raise
            if worker is not None:
                return worker

    async def _start_worker(self, header: str) -> Worker:
        """Start and load a worker (counted live from now on); on failure it is gone again."""
        self._live += 1
        repl = ReplProcess(
            self._argv,
            env=self._env,
            sandbox=self._policy,
            scratch_root=self.config.scratch_dir,
            max_response_bytes=self.config.max_response_mb << 20,
            name="repl",
        )
        worker = Worker(header, repl)
        self._repls.add(repl)
        try:
            if self._closed:
                raise PoolClosedError("the pool is closed")
            await worker.start(self.config.start_timeout)
        except BaseException as exc:
            self._live -= 1
            self._close_repl(repl)
            if isinstance(exc, ReplError):
                self._judge_header(header, exc)
            self._wake_one()
            raise
        self._start_crashes.pop(header, None)
        logger.debug("worker %d started (pid %s)", worker.id, repl.pid)
        return worker

    def _judge_header(self, header: str, failure: ReplError) -> None:
        """Give a header up after it failed to compile, outlasted ``start_timeout`` or crashed twice in a row:
        with Mathlib each try costs up to ``start_timeout`` (600 s), for every request under it."""
        if header in self._bad_headers:
            return
        if isinstance(failure, HeaderError):
            reason = failure.reason
        elif isinstance(failure.__cause__, ReplTimeout):
            reason = f"the worker did not load the header within start_timeout={self.config.start_timeout:g} s"
        else:
            self._start_crashes[header] = crashes = self._start_crashes.get(header, 0) + 1
            if crashes < 2:
                return
            reason = f"{failure.reason} ({crashes} workers in a row)"
        logger.error("giving up the header %r until the pool restarts: %s", header[:80], reason)
        self._bad_headers[header] = reason
        for h, waiter in list(self._waiters):  # they would wait for a worker that cannot come
            if h == header and not waiter.done():
                self._waiters.remove((h, waiter))
                waiter.set_result(None)

    def _touch(self, header: str) -> None:
        """Mark ``header`` recently used; forget the least recently used beyond ``max_headers``."""
        self._headers[header] = None
        self._headers.move_to_end(header)
        while len(self._headers) > self.config.max_headers:
            old, _ = self._headers.popitem(last=False)
            for worker in list(self._idle.pop(old, ())):
                self._retire(worker)

    def _evictable(self, header: str) -> Worker | None:
        for other in self._headers:  # least recently used first
            if other != header and self._idle.get(other):
                return self._idle[other].popleft()
        for other, queue in self._idle.items():
            if other != header and queue:
                return queue.popleft()
        return None

    def _release(self, worker: Worker, memory_mb: float = 0.0, wrote_tmpfs: bool = False) -> None:
        """Back to the pool: to a waiter for its header, retired, or idle. ``memory_mb`` and ``wrote_tmpfs``:
        its footprint after the check it just did (a fresh worker is not judged by its memory: one above
        the limit would be replaced forever)."""
        self._busy.discard(worker)
        limit = self.config.memory_limit_mb
        # One that wrote to its RAM-backed /tmp is replaced, so that the next proof finds it empty.
        if (
            worker.checks >= self.config.max_checks_per_worker
            or (limit and memory_mb > limit)
            or wrote_tmpfs
            or worker.header not in self._headers
            or self._closed
        ):
            self._retire(worker, replace_it=True)
            return
        for i, (header, waiter) in enumerate(self._waiters):
            if header == worker.header and not waiter.done():
                del self._waiters[i]
                self._busy.add(worker)
                waiter.set_result(worker)
                return
        if self._waiters:  # the waiters want another header: make room for them
            self._retire(worker)
            return
        self._idle.setdefault(worker.header, deque()).append(worker)

    def _discard(self, worker: Worker) -> None:
        """A worker that failed or timed out: kill it, replace it in the background."""
        self._busy.discard(worker)
        worker.repl.kill()
        self._retire(worker, replace_it=True)

    def _close_repl(self, repl: ReplProcess) -> None:
        repl.kill()
        self._spawn_task(repl.close())
        self._repls.discard(repl)

    def _retire(self, worker: Worker, replace_it: bool = False) -> None:
        self._live -= 1
        self._close_repl(worker.repl)
        if replace_it and not self._closed and worker.header in self._headers and not self._waiters_for_other(worker):
            self._live += 1  # reserve the slot now, so that a request arriving meanwhile waits for it
            self._spawn_task(self._replace(worker.header))
        else:
            self._wake_one()

    def _waiters_for_other(self, worker: Worker) -> bool:
        return any(h != worker.header for h, w in self._waiters if not w.done())

    async def _replace(self, header: str) -> None:
        self._live -= 1  # _start_worker counts it again
        try:
            worker = await self._start_worker(header)
        except (ReplError, PoolClosedError) as exc:
            logger.warning("replacement worker failed to start: %s", exc)
            return
        self._release(worker)

    def _wake_one(self) -> None:
        while self._waiters:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # retry: a slot is free
                return

    async def _warm(self, headers: list[str]) -> None:
        if not headers:
            return
        for h in headers:
            self._touch(h)
        free = self.config.workers - self._live
        plan = [headers[i % len(headers)] for i in range(max(free, 0))]
        results = await asyncio.gather(*(self._start_worker(h) for h in plan), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for r in results:
            if isinstance(r, Worker):
                self._release(r)
        if failures:
            raise failures[0]

    async def _watchdog(self) -> None:
        """Kill a busy worker whose memory passes ``check_memory_mb`` (its check gets a memory verdict)."""
        limit = self.config.check_memory_mb
        while not self._closed:
            await asyncio.sleep(WATCHDOG_INTERVAL)
            for worker in list(self._busy):
                if not worker.repl.oom and worker.repl.memory_mb() > limit:
                    logger.warning("worker %d passed %d MB: killing it", worker.id, limit)
                    worker.repl.oom = True
                    worker.repl.kill()

    async def _shutdown(self) -> None:
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolClosedError("the pool was closed while the request waited for a worker"))
                waiter.exception()
        self._waiters.clear()
        self._busy.clear()  # their checks fail over to a retry that finds the pool closed, and retire them
        for queue in self._idle.values():
            for worker in queue:
                self._live -= 1
                self._close_repl(worker.repl)
        self._idle.clear()
        for repl in self._repls:  # first kill every process at once, then reap them
            repl.kill()
        # Checks still running now fail over to a retry that finds the pool closed (PoolClosedError);
        # starts and closes finish quickly once their processes are dead, and may spawn closes of
        # their own: wait until nothing is left (cancel whatever is still there after the deadline).
        me = asyncio.current_task()
        deadline = self._loop.time() + SHUTDOWN_GRACE
        while pending := [t for t in asyncio.all_tasks(self._loop) if t is not me]:
            if self._loop.time() >= deadline:
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                break
            await asyncio.wait(pending, timeout=deadline - self._loop.time())
        for repl in list(self._repls):
            await repl.close()
        self._repls.clear()


@atexit.register
def _close_all_pools() -> None:
    for pool in list(_live_pools):
        pool.close()
