"""Verification on a Ray cluster: a ``LeanPool`` inside a Ray actor on each node, one client in front.

``RayVerifier(config)`` (what ``make_verifier`` returns for ``backend: ray``) connects to the cluster at
``config.ray_address`` and starts ``floor(CPUs / ray_cpus_per_actor)`` actors on every live node, each
pinned to its node and owning a local REPL pool of ``ray_cpus_per_actor`` workers (the Lean project and
the limits come from the same config, so every node needs the project at the same path). The headers
are pre-warmed on every actor before the constructor returns.

The client sends each actor chunks of proofs while it has free capacity (at most ``PREFETCH`` x its
workers in flight); the actor streams each verdict back as soon as it is reached. When an actor or its
node dies, the proofs it had not answered go back to the front of the queue and are sent elsewhere, so
every request still gets exactly one verdict; a proof that has been on ``MAX_TRIES`` dead actors gets an
ERROR verdict (reward None). Verdicts are cached and identical proofs in flight are shared on the client,
as in the local pool. Ray is an optional extra: it is imported when this backend is first used.

The processes of one distributed launch (torchrun / accelerate: same MASTER_ADDR, MASTER_PORT and
WORLD_SIZE) share one set of named actors: the first to ask starts them, the others find them by name,
and they live until the process that started them closes its verifier.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from prover.verifier.base import LoopThreadVerifier
from prover.verifier.cache import VerdictCache
from prover.verifier.config import VerifierConfig
from prover.verifier.errors import LeanSetupError, PoolClosedError, VerifierError
from prover.verifier.lean_project import lean_version_id
from prover.verifier.pool import LeanPool
from prover.verifier.verdict import ProofRequest, Status, Verdict

logger = logging.getLogger(__name__)

# Proofs in flight per actor, in units of its workers: the surplus waits in the actor's own queue, so a
# REPL that finishes starts its next proof without waiting a round trip to the client.
PREFETCH = 2
MAX_TRIES = 3  # actors a proof may outlive before it gets an ERROR verdict (a proof that kills its host)
CLOSE_TIMEOUT = 60.0  # seconds for the actors to shut their pools down before they are killed


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise LeanSetupError("verifier.backend=ray needs Ray: pip install -e .[ray]") from exc
    return ray


class PoolActor:
    """What runs on a node: a ``LeanPool`` and a method that streams back verdicts as they are reached."""

    def __init__(self, config: VerifierConfig, headers: list[str]):
        self.pool = LeanPool(config, headers=headers)

    def info(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "workers": self.pool.config.workers}

    async def warm(self, headers: list[str]) -> None:
        await asyncio.to_thread(self.pool.warm, headers)

    async def check_stream(self, requests: list[tuple[int, ProofRequest]]):
        """Yields ``(index, verdict)`` in the order the verdicts are reached."""
        pending = {asyncio.ensure_future(self.pool.check(r)): i for i, r in requests}
        try:
            while pending:
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    yield pending.pop(task), task.result()
        finally:
            for task in pending:
                task.cancel()

    def stats(self) -> dict:
        return self.pool.stats()

    def close(self) -> None:
        self.pool.close()


def plan_actors(nodes: list[dict], cpus_per_actor: int) -> list[str]:
    """One node id per actor to start: ``floor(CPU / cpus_per_actor)`` on each live node (``ray.nodes()``)."""
    plan = []
    for node in nodes:
        if node.get("Alive"):
            plan += [node["NodeID"]] * int(node.get("Resources", {}).get("CPU", 0) // cpus_per_actor)
    return plan


def shared_job_key() -> str | None:
    """What the processes of one distributed launch (torchrun, accelerate, deepspeed) have in common, so
    that they share one set of actors instead of each starting its own; None outside such a launch."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "MASTER_ADDR" not in os.environ:
        return None
    job = f"{os.environ['MASTER_ADDR']}:{os.environ.get('MASTER_PORT', '')}:{os.environ['WORLD_SIZE']}"
    return hashlib.sha256(job.encode()).hexdigest()[:12]


@dataclass
class _Item:
    request: ProofRequest
    future: asyncio.Future
    tries: int = 0


@dataclass
class _Slot:
    """The client's view of one actor."""

    handle: Any
    node: str
    workers: int
    inflight: int = 0
    answered: int = 0
    alive: bool = True
    owned: bool = True  # started by this process (else shared with the sibling that did)
    tasks: set = field(default_factory=set)

    @property
    def free(self) -> int:
        return PREFETCH * self.workers - self.inflight


class RayVerifier(LoopThreadVerifier):
    """``LeanPool`` actors on a Ray cluster behind the ``Verifier`` interface (plus ``submit`` and ``stats``)."""

    def __init__(self, config: VerifierConfig | None = None, headers: Iterable[str] = ()):
        self.config = config = config or VerifierConfig(backend="ray")
        if config.ray_cpus_per_actor < 1:
            raise ValueError(f"ray_cpus_per_actor={config.ray_cpus_per_actor}: need at least 1 CPU per actor")
        ray = self._ray = import_ray()
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=config.ray_address, logging_level=logging.WARNING, log_to_driver=False)
        allowlist = config.effective_axiom_allowlist()
        self._cache = VerdictCache(
            config.cache_path, f"{sorted(allowlist)}|native={config.allow_native}|{lean_version_id(config)}"
        )
        self._inflight: dict[str, asyncio.Future] = {}
        self._queue: deque[_Item] = deque()
        self._slots: list[_Slot] = []
        self._tasks: set[asyncio.Task] = set()
        self._resent = 0  # proofs sent again after their actor died
        self._start_loop("ray-verifier")
        try:
            self._slots = self._start_actors(list(headers))
        except BaseException:
            self.close()
            raise
        workers = sum(s.workers for s in self._slots)
        self._pending = threading.BoundedSemaphore(config.max_pending or 8 * workers)

    # ------------------------------------------------------------------ public API

    def warm(self, headers: Iterable[str]) -> None:
        """Load ``headers`` on every live actor."""
        headers = list(headers)
        self._ray.get([s.handle.warm.remote(headers) for s in self._slots if s.alive])

    def stats(self) -> dict:
        """Actors (live and started), workers, proofs queued here and in flight on the actors, verdicts
        answered per node (dead ones included) and proofs re-sent after their actor died."""
        live = [s for s in self._slots if s.alive]
        answered: dict[str, int] = {}
        for slot in self._slots:
            answered[slot.node] = answered.get(slot.node, 0) + slot.answered
        return {
            "actors": len(live),
            "actors_started": len(self._slots),
            "workers": sum(s.workers for s in live),
            "queued": len(self._queue),
            "inflight": sum(s.inflight for s in live),
            "cached": len(self._cache),
            "nodes": sorted({s.node for s in live}),
            "answered": answered,
            "resent": self._resent,
        }

    def close(self) -> None:
        """Shut the actors' pools down, kill the actors, leave the cluster if this client joined it."""
        if self._closed:
            return
        self._closed = True
        live = [s for s in self._slots if s.alive and s.owned]
        asyncio.run_coroutine_threadsafe(self._abort(), self._loop).result(timeout=10)
        closing = [s.handle.close.remote() for s in live]
        if closing:
            _, late = self._ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT)
            if late:
                logger.warning(
                    "%d verifier actors did not close their pools within %g s; killing them", len(late), CLOSE_TIMEOUT
                )
        for slot in self._slots:
            if slot.owned:
                self._kill(slot.handle)
        self._stop_loop()
        self._cache.close()
        if self._owns_ray:
            self._ray.shutdown()

    # ------------------------------------------------------------------ actors

    def _start_actors(self, headers: list[str]) -> list[_Slot]:
        cpus = self.config.ray_cpus_per_actor
        plan = plan_actors(self._ray.nodes(), cpus)
        if not plan:
            raise VerifierError(
                f"no live Ray node has ray_cpus_per_actor={cpus} CPUs: lower "
                f"verifier.ray_cpus_per_actor or add CPU nodes to the cluster"
            )
        actor_config = replace(self.config, backend="local", workers=cpus, cache_path=None)
        job = shared_job_key()
        created = [
            self._create_actor(actor_config, headers, node, f"prover-verifier-{job}-{i}" if job else None)
            for i, node in enumerate(plan)
        ]
        logger.info(
            "%d verifier actors (%d REPL workers each) on %d nodes, %d started by this process",
            len(created),
            cpus,
            len(set(plan)),
            sum(owned for _, owned in created),
        )
        infos = [handle.info.remote() for handle, _ in created]
        slots, errors = [], []
        for (handle, owned), node, ref in zip(created, plan, infos):
            try:  # waits for the pool to start and load the headers
                info = self._ray.get(ref)
            except self._ray.exceptions.RayError as exc:
                errors.append(exc)
                self._kill(handle)
                continue
            slots.append(_Slot(handle, f"{info['host']}:{node[:8]}", info["workers"], owned=owned))
        if errors:
            logger.error("%d of %d verifier actors failed to start: %s", len(errors), len(created), errors[0])
        if not slots:
            raise VerifierError(f"no verifier actor started: {errors[0]}") from errors[0]
        return slots

    def _create_actor(self, config: VerifierConfig, headers: list[str], node: str, name: str | None):
        """(handle, whether this process created it): the named actor of the job if another process made it."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options = {
            "num_cpus": config.workers,
            "max_restarts": 0,
            "scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False),
        }
        if name:
            options["name"] = name
        try:
            return self._ray.remote(PoolActor).options(**options).remote(config, headers), True
        except ValueError:  # the name is taken: a sibling process of the same job was first
            return self._ray.get_actor(name), False

    def _kill(self, handle) -> None:
        try:
            self._ray.kill(handle, no_restart=True)
        except Exception as exc:  # already gone with its node
            logger.debug("could not kill a verifier actor: %s", exc)

    # ------------------------------------------------------------------ checking (on the client's loop)

    async def _check_many(self, requests: list[ProofRequest]) -> list[Verdict]:
        return list(await asyncio.gather(*(self._check(r) for r in requests)))

    async def _check(self, request: ProofRequest) -> Verdict:
        key = self._cache.key(request)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        if key in self._inflight:  # the same proof is being checked right now
            verdict = await asyncio.shield(self._inflight[key])
            return replace(verdict, cached=True, time=0.0, messages=list(verdict.messages))
        if self._closed:
            raise PoolClosedError("the verifier is closed")
        future = self._loop.create_future()
        self._inflight[key] = future
        self._queue.append(_Item(request, future))
        self._dispatch()
        try:
            verdict = await asyncio.shield(future)
        finally:
            del self._inflight[key]
        self._cache.put(key, verdict)
        return verdict

    def _dispatch(self) -> None:
        """Send queued proofs to the actors with the most free capacity."""
        while self._queue:
            live = [s for s in self._slots if s.alive]
            if not live:
                self._fail_queued(VerifierError("every Ray verifier actor died; see the log for why"))
                return
            slot = max(live, key=lambda s: s.free)
            # Wait for half an actor's workers to free up rather than sending one proof per call.
            if slot.free < min(len(self._queue), max(1, slot.workers // 2)):
                return
            items = [self._queue.popleft() for _ in range(min(slot.free, len(self._queue)))]
            slot.inflight += len(items)
            task = self._spawn(self._stream(slot, items))
            slot.tasks.add(task)
            task.add_done_callback(slot.tasks.discard)

    async def _stream(self, slot: _Slot, items: list[_Item]) -> None:
        ray = self._ray
        unanswered = dict(enumerate(items))
        try:
            stream = slot.handle.check_stream.options(num_returns="streaming").remote(
                [(i, item.request) for i, item in unanswered.items()]
            )
            async for ref in stream:
                i, verdict = await ref
                item = unanswered.pop(i)
                slot.inflight -= 1
                if not item.future.done():
                    slot.answered += 1
                    item.future.set_result(verdict)
                self._dispatch()
        except ray.exceptions.RayActorError as exc:
            if slot.alive:
                slot.alive = False
                logger.warning(
                    "verifier actor on %s died (%s); re-sending its %d unanswered proofs",
                    slot.node,
                    type(exc).__name__,
                    len(unanswered),
                )
                self._kill(slot.handle)
            self._requeue(list(unanswered.values()), f"actor on {slot.node} died: {exc}")
        except ray.exceptions.RayError as exc:  # the actor is alive but the call failed: a bug, not a proof
            logger.error("verifier actor on %s failed a batch: %s", slot.node, exc)
            self._requeue(list(unanswered.values()), f"actor on {slot.node} failed: {exc}")
        finally:
            slot.inflight -= len(unanswered)
            self._dispatch()

    def _requeue(self, items: list[_Item], why: str) -> None:
        for item in reversed(items):  # back to the front, in their order
            item.tries += 1
            if item.future.done():
                continue
            if item.tries >= MAX_TRIES:
                item.future.set_result(Verdict(Status.ERROR, f"infra: {why} ({item.tries} tries)", "infra"))
            else:
                self._resent += 1
                self._queue.appendleft(item)

    def _fail_queued(self, exc: BaseException) -> None:
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(exc)

    async def _abort(self) -> None:
        """Closing: every request without a verdict fails; nothing is sent any more."""
        for slot in self._slots:
            slot.alive = False
        self._fail_queued(PoolClosedError("the verifier was closed while the request waited"))
        for future in self._inflight.values():
            if not future.done():
                future.set_exception(PoolClosedError("the verifier was closed while the request was checked"))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _spawn(self, coro) -> asyncio.Task:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task
