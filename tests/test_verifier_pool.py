"""The local pool against the REPL double: one verdict per request under any fault, timeouts and
memory limits, no process left behind, the cache, the sandbox, recycling, headers and the APIs. The
behavioural tests marked KINDS run on the pool and on a RemoteVerifier in front of it (the HTTP service)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import pytest
from processes import tagged

from prover.verifier import LeanPool, PoolClosedError, ProofRequest, Status, VerifierConfig, make_verifier
from prover.verifier.sandbox import bwrap_works, resolve_sandbox

DOUBLE = str(Path(__file__).with_name("repl_double.py"))
HEADER = "import Mathlib\nimport Aesop\n"
STATEMENT = "theorem t (a b : ℝ) (h : a = b) : b = a := by\n"


def config(tag: str = "", **kw) -> VerifierConfig:
    args = [sys.executable, DOUBLE] + (["--tag", tag] if tag else [])
    return VerifierConfig(repl_command=args, **{"workers": 2, "timeout": 2.0, "start_timeout": 20.0, **kw})


def request(proof: str, header: str = HEADER, statement: str = STATEMENT) -> ProofRequest:
    return ProofRequest(statement=statement, proof=proof, header=header, name="t")


def wait_gone(tag: str, seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := tagged(tag)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# directive -> the statuses it may end in (a fault never yields "proved")
OUTCOMES = {
    "": {Status.PROVED},
    "double:slow=0.05": {Status.PROVED},
    "double:huge=200000": {Status.PROVED},
    "double:error": {Status.REJECTED},
    "double:sorry": {Status.REJECTED},
    "double:silent_sorry": {Status.REJECTED},
    "double:axiom=Classical.em_fake": {Status.REJECTED},
    "double:hang": {Status.TIMEOUT},
    "double:exit": {Status.ERROR},
    "double:sigkill": {Status.ERROR},
    "double:garbage": {Status.ERROR},
    "double:unknown_env": {Status.ERROR},
}


def _service_missing() -> str | None:
    missing = [m for m in ("fastapi", "uvicorn", "httpx") if importlib.util.find_spec(m) is None]
    return (
        f"the http kind needs the service extra ({', '.join(missing)}): pip install -e .[service]" if missing else None
    )


# The behavioural tests below run on the local pool and on a RemoteVerifier in front of the same pool
# behind the HTTP service (issue 18: the remote verifier must pass what the pool passes).
KINDS = pytest.mark.parametrize(
    "kind",
    [
        "local",
        pytest.param("http", marks=pytest.mark.skipif(_service_missing() is not None, reason=str(_service_missing()))),
    ],
)


@contextlib.contextmanager
def served(pool_config: VerifierConfig, service=None):
    """A pool on the double behind the service on loopback: yields (url, pool)."""
    from prover.verifier.service.app import create_app
    from prover.verifier.service.config import ServiceConfig
    from prover.verifier.service.server import ServiceThread

    with LeanPool(pool_config) as pool:
        with ServiceThread(create_app(pool, service or ServiceConfig(), pool_config)) as url:
            yield url, pool


@contextlib.contextmanager
def verifier_of(kind: str, pool_config: VerifierConfig, service=None):
    """The local pool itself, or a RemoteVerifier in front of the same pool behind the service."""
    if kind == "local":
        with LeanPool(pool_config) as pool:
            yield pool
        return
    from prover.verifier.http import RemoteVerifier

    with served(pool_config, service) as (url, _):
        client = VerifierConfig(
            backend="http", url=url, workers=pool_config.workers, max_pending=pool_config.max_pending
        )
        with make_verifier(client) as remote:
            assert isinstance(remote, RemoteVerifier)
            yield remote


@KINDS
def test_random_faults_each_request_gets_exactly_one_verdict(kind):
    rng = random.Random(4321)
    kinds = [k for k in OUTCOMES if k != "double:hang"]
    picks = [rng.choice(kinds) for _ in range(30)] + ["double:hang"]
    rng.shuffle(picks)
    # distinct proofs (the index) so that the cache does not fold them together
    requests = [request(f"  linarith  -- {i} {d} {kind}") for i, d in enumerate(picks)]
    tag = uuid.uuid4().hex
    with verifier_of(kind, config(tag, workers=3, timeout=1.0)) as verifier:
        verdicts = verifier.check_batch(requests)
    assert len(verdicts) == len(requests)
    for d, v in zip(picks, verdicts):
        assert v.status in OUTCOMES[d], (d, v)
        assert v.reward() is None if v.status is Status.ERROR else v.reward() in (0.0, 1.0)
    assert sum(v.proved for v in verdicts) == sum(OUTCOMES[d] == {Status.PROVED} for d in picks)
    assert wait_gone(tag) == []


@KINDS
def test_a_timeout_is_a_verdict_and_the_next_proof_is_checked(kind):
    with verifier_of(kind, config(workers=1, timeout=0.5)) as verifier:
        hung, after = verifier.check_batch([request("  linarith -- double:hang"), request("  linarith")])
    assert hung.status is Status.TIMEOUT and hung.check == "timeout" and hung.reward() == 0.0 and after.proved


@KINDS
def test_batch_keeps_input_order(kind):
    proofs = [
        f"  linarith -- {i} double:slow={0.01 * (7 - i % 7):.2f}" + (" double:error" if i % 3 == 0 else "")
        for i in range(14)
    ]
    with verifier_of(kind, config(workers=3)) as verifier:
        verdicts = verifier.check_batch([request(p) for p in proofs])
    assert [v.status for v in verdicts] == [Status.REJECTED if i % 3 == 0 else Status.PROVED for i in range(14)]


@KINDS
def test_verdicts_keep_lean_messages_positioned_in_the_whole_text(kind):
    with verifier_of(kind, config()) as verifier:
        verdict = verifier.check_batch([request("  linarith -- double:error")])[0]
    assert verdict.messages[0]["pos"]["line"] == 4 and "line 4" in verdict.reason


@KINDS
def test_async_api_from_another_loop_and_batch_inside_a_loop(kind):
    with verifier_of(kind, config()) as verifier:

        async def from_my_loop():
            one = await verifier.check(request("  linarith"))
            many = await verifier.check_many([request(f"  linarith -- {i} double:error") for i in range(3)])
            inside = verifier.check_batch([request("  linarith -- in a loop")])  # blocks, but works
            return one, many, inside

        one, many, inside = asyncio.run(from_my_loop())
    assert one.proved and [v.status for v in many] == [Status.REJECTED] * 3 and inside[0].proved


@KINDS
def test_submit_applies_backpressure(kind):
    with verifier_of(kind, config(workers=1, max_pending=1)) as verifier:
        first = verifier.submit(request("  linarith -- double:slow=0.4"))
        start = time.monotonic()
        second = verifier.submit(request("  linarith -- 2"))  # waits until the first is done
        assert time.monotonic() - start >= 0.3 and first.done()
        assert second.result(timeout=10).proved


@KINDS
def test_close_fails_waiting_requests_instead_of_hanging(kind):
    with contextlib.ExitStack() as stack:
        verifier = stack.enter_context(verifier_of(kind, config(workers=1)))
        futures = [verifier.submit(request(f"  linarith -- {i} double:slow=0.5")) for i in range(4)]
        time.sleep(0.3)
        threading.Thread(target=verifier.close).start()
        outcomes = []
        for f in futures:
            try:
                outcomes.append(f.result(timeout=20).status)
            except Exception as exc:  # PoolClosedError
                outcomes.append(type(exc).__name__)
    assert "PoolClosedError" in outcomes and Status.PROVED not in outcomes[1:]
    with pytest.raises(PoolClosedError):
        verifier.check_batch([request("  linarith")])


def test_transient_crash_is_retried_once(tmp_path):
    marker = tmp_path / "crashed-once"
    with LeanPool(config(sandbox="none")) as pool:
        verdict = pool.check_batch([request(f"  linarith -- double:once={marker} double:sigkill")])[0]
    assert marker.exists() and verdict.status is Status.PROVED


def test_timeout_kills_the_group_and_the_pool_recovers():
    tag = uuid.uuid4().hex
    with LeanPool(config(tag, workers=1, timeout=0.5)) as pool:
        start = time.monotonic()
        hung, after = pool.check_batch([request("  linarith -- double:spawn double:hang"), request("  linarith")])
        assert hung.status is Status.TIMEOUT and hung.check == "timeout" and hung.reward() == 0.0
        assert after.proved and time.monotonic() - start < 5
    assert wait_gone(tag) == []


def test_memory_watchdog_stops_a_proof():
    with LeanPool(config(check_memory_mb=300, timeout=20)) as pool:
        hog, fine = pool.check_batch([request("  nlinarith -- double:oom"), request("  linarith")])
    assert hog.status is Status.TIMEOUT and hog.check == "memory", hog
    assert fine.proved


def test_address_space_limit_stops_a_proof():
    with LeanPool(config(address_space_mb=400, check_memory_mb=0, timeout=20)) as pool:
        hog, fine = pool.check_batch([request("  nlinarith -- double:oom"), request("  linarith")])
    assert hog.status is Status.TIMEOUT and hog.check == "memory", hog
    assert fine.proved


def test_close_leaves_no_process_behind():
    tag = uuid.uuid4().hex
    pool = LeanPool(config(tag, workers=2), headers=[HEADER])
    assert len(tagged(tag)) >= 2
    pool.check_batch([request("  linarith -- double:spawn")])
    pool.close()
    pool.close()  # idempotent
    assert wait_gone(tag) == []


PARENT = textwrap.dedent("""
    import signal, sys, time
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as on a terminal (a background job ignores it)
    from prover.verifier import LeanPool, ProofRequest, VerifierConfig
    pool = LeanPool(VerifierConfig(repl_command=[sys.executable, {double!r}, "--tag", {tag!r}], workers=2,
                                   sandbox={sandbox!r}, scratch_dir={scratch!r}), headers=["import Mathlib"])
    pool.check_batch([ProofRequest("theorem t : 1 = 1 := by", {proof!r}, "import Mathlib")])
    print("ready", flush=True)
    time.sleep(600)
""")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_no_orphans_when_the_parent_dies(sig, tmp_path):
    sandbox = "bwrap" if bwrap_works() else "none"
    # Under bwrap the pid namespace also takes a grandchild along; without it only the REPL is ours.
    proof = " rfl -- double:spawn" if sandbox == "bwrap" else " rfl"
    tag = uuid.uuid4().hex
    code = PARENT.format(double=DOUBLE, tag=tag, sandbox=sandbox, proof=proof, scratch=str(tmp_path))
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout.readline().strip() == "ready"
        assert len(tagged(tag)) >= 2
        parent.send_signal(sig)
        parent.wait(timeout=10)
        assert wait_gone(tag) == []
    finally:
        parent.kill()
    # A parent killed by a signal it does not handle cannot remove its workers' scratch directories
    # (Ctrl-C unwinds and cleans up): the next pool sweeps them.
    assert len(list(tmp_path.iterdir())) == (0 if sig == signal.SIGINT else 2)
    LeanPool(config(scratch_dir=str(tmp_path))).close()
    assert list(tmp_path.iterdir()) == []


def test_cache_hits_in_memory_and_in_sqlite(tmp_path):
    db = tmp_path / "verdicts.sqlite"
    slow = request("  linarith -- double:slow=0.3")
    with LeanPool(config(cache_path=str(db))) as pool:
        first = pool.check_batch([slow])[0]
        start = time.monotonic()
        again, twin = pool.check_batch([slow, slow])
        assert time.monotonic() - start < 0.2
    assert first.proved and not first.cached and first.time >= 0.3
    assert again.cached and twin.cached and again.proved and again.time == 0.0
    with LeanPool(config(cache_path=str(db))) as pool:
        start = time.monotonic()
        later = pool.check_batch([slow])[0]
        assert later.cached and later.proved and time.monotonic() - start < 0.2
    # Another policy (native allowed) does not reuse these verdicts.
    with LeanPool(config(cache_path=str(db), allow_native=True)) as pool:
        assert not pool.check_batch([slow])[0].cached


def test_errors_and_timeouts_are_not_cached():
    with LeanPool(config(timeout=0.5)) as pool:
        hang = request("  linarith -- double:hang")
        crash = request("  linarith -- double:exit")
        first = pool.check_batch([hang, crash])
        second = pool.check_batch([hang, crash])
    assert [v.status for v in first] == [Status.TIMEOUT, Status.ERROR]
    assert not any(v.cached for v in second)


def sandbox_kind() -> str:
    kind = resolve_sandbox("auto")
    if kind == "none":
        pytest.skip("neither bwrap nor unshare can create namespaces on this machine")
    return kind


def test_sandbox_keeps_the_filesystem_read_only_outside_scratch(tmp_path):
    if sandbox_kind() != "bwrap":
        pytest.skip("only bwrap makes the filesystem read-only (unshare isolates network and pids)")
    outside = tmp_path / "escaped.txt"
    with LeanPool(config()) as pool:
        verdict = pool.check_batch([request(f"  linarith -- double:write={outside} double:write=inside.txt")])[0]
    texts = [m["data"] for m in verdict.messages]
    assert any(t.startswith(f"write {outside}: failed") for t in texts), texts
    assert "write inside.txt: ok" in texts
    assert not outside.exists()


def test_sandbox_has_no_network():
    sandbox_kind()
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    try:
        with LeanPool(config()) as pool:
            inside = pool.check_batch([request(f"  linarith -- double:connect=127.0.0.1:{port}")])[0]
        with LeanPool(config(sandbox="none")) as pool:
            outside = pool.check_batch([request(f"  linarith -- double:connect=127.0.0.1:{port}")])[0]
    finally:
        server.close()
    assert "failed" in inside.messages[0]["data"]
    assert outside.messages[0]["data"].endswith("ok")  # the same request reaches it without the sandbox


def worker_pids(pool: LeanPool) -> set[int]:
    return {w.repl.pid for q in pool._idle.values() for w in q} | {w.repl.pid for w in pool._busy}


def test_workers_are_recycled_after_max_checks_or_above_the_memory_limit():
    with LeanPool(config(workers=1, max_checks_per_worker=2)) as pool:
        pool.check_batch([request(f"  linarith -- {i}") for i in range(2)])
        first = worker_pids(pool)
        pool.check_batch([request(f"  linarith -- {i}") for i in range(2, 4)])
        assert worker_pids(pool).isdisjoint(first)
    with LeanPool(config(workers=1, memory_limit_mb=1)) as pool:  # any process is above 1 MB
        pool.check_batch([request("  linarith -- a")])
        first = worker_pids(pool)
        pool.check_batch([request("  linarith -- b")])
        assert worker_pids(pool).isdisjoint(first)


def test_workers_are_grouped_by_header_with_lru():
    headers = ["import Mathlib\n", "import Mathlib\nopen Real\n", "import Mathlib\nopen Nat\n"]
    with LeanPool(config(workers=2, max_headers=2)) as pool:
        reqs = [request(f"  linarith -- {i}", header=headers[i % 3]) for i in range(9)]
        assert all(v.proved for v in pool.check_batch(reqs))
        assert len(pool.stats()["headers"]) == 2
        assert {w.header for q in pool._idle.values() for w in q} <= set(pool.stats()["headers"])


def test_a_header_that_does_not_compile_is_an_error_for_every_proof():
    with LeanPool(config()) as pool:
        verdicts = pool.check_batch(
            [request(f"  linarith -- {i}", header="import Mathlib -- double:header_error") for i in range(3)]
        )
    assert all(v.status is Status.ERROR and v.check == "header" for v in verdicts)


@pytest.fixture
def starts(monkeypatch):
    """How many REPL processes the pool starts (each one loads the header once)."""
    from prover.verifier.repl import ReplProcess

    count = [0]
    start = ReplProcess.start

    async def counting(self):
        count[0] += 1
        return await start(self)

    monkeypatch.setattr(ReplProcess, "start", counting)
    return count


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("header_error", "header does not compile"),
        ("header_hang", "did not load the header within start_timeout=1 s"),
        ("header_exit", "exited (code 1) (2 workers in a row)"),
    ],
)
def test_a_header_that_cannot_load_is_tried_once_per_worker_then_answered_at_once(fault, reason, starts):
    bad = f"import Mathlib -- double:{fault}"
    with LeanPool(config(workers=4, start_timeout=1.0, sandbox="none")) as pool:
        first = pool.check_batch([request(f"  linarith -- {i}", header=bad) for i in range(40)])
        tried = starts[0]
        began = time.monotonic()
        again = pool.check_batch([request(f"  linarith -- again {i}", header=bad) for i in range(40)])
        assert time.monotonic() - began < 1.0  # no start, no start timeout
        # At most the 4 workers starting at once, and one more that takes the slot of the first crash.
        assert starts[0] == tried <= 5, (tried, starts[0])
        for verdict in first + again:
            assert verdict.status is Status.ERROR and verdict.check == "header", verdict
            assert reason in verdict.reason, verdict.reason
        assert pool.check_batch([request("  linarith", header="import Mathlib -- another")])[0].proved
    with LeanPool(config(workers=4, start_timeout=1.0, sandbox="none")) as pool:  # a new pool tries again
        pool.check_batch([request("  linarith", header=bad)])
    assert starts[0] > tried + 1


def test_one_crash_while_loading_a_header_is_not_held_against_it(starts):
    marker = Path(tempfile.mkdtemp()) / "crashed"  # not under pytest's 0700 tree: a worker may run as its own uid
    marker.parent.chmod(0o777)
    try:
        header = f"import Mathlib -- double:once={marker} double:header_exit"
        with LeanPool(config(workers=1, sandbox="none")) as pool:
            verdicts = pool.check_batch([request(f"  linarith -- {i}", header=header) for i in range(3)])
    finally:
        shutil.rmtree(marker.parent, ignore_errors=True)
    assert [v.status for v in verdicts] == [Status.PROVED] * 3 and starts[0] == 2


def test_ctrl_c_cancels_the_rest_of_the_batch():
    """SIGINT while check_batch waits: the requests not yet checked are dropped, running checks stopped,
    and the next check does not wait behind them."""
    with LeanPool(config(workers=2, timeout=30)) as pool:
        pool.warm([HEADER])
        # Ctrl-C reaches the main thread (the kernel prefers the thread group leader for a process signal)
        timer = threading.Timer(0.5, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT))
        timer.start()
        began = time.monotonic()
        try:
            with pytest.raises(KeyboardInterrupt):
                pool.check_batch([request(f"  linarith -- {i} double:slow=2") for i in range(20)])  # 20 s of work
        finally:
            timer.cancel()
        assert time.monotonic() - began < 10
        stats = pool.stats()
        assert stats["waiting"] == 0 and stats["busy"] == 0, stats
        began = time.monotonic()
        assert pool.check_batch([request("  linarith -- next")])[0].proved
        assert time.monotonic() - began < 10  # a batch left running would take 18 s more


def test_stats_after_close_count_no_worker():
    pool = LeanPool(config(workers=2), headers=[HEADER])
    assert pool.check_batch([request("  linarith")])[0].proved
    assert pool.stats()["live"] == 2
    pool.close()
    assert pool.stats()["live"] == 0 and pool.stats()["idle"] == 0


def test_screen_and_statement_errors_need_no_worker():
    with LeanPool(config()) as pool:
        cheat, nameless = pool.check_batch([request("  sorry"), request("  rfl", statement="example : 1 = 1 := by\n")])
        assert pool.stats()["live"] == 0
    assert cheat.status is Status.REJECTED and cheat.check == "screen"
    assert nameless.status is Status.ERROR and nameless.check == "statement"


def test_missing_lean_project_names_the_fix(monkeypatch):
    from prover.verifier import LeanSetupError

    monkeypatch.delenv("PROVER_LEAN_PROJECT", raising=False)
    with pytest.raises(LeanSetupError, match="setup_lean.sh"):
        LeanPool(VerifierConfig())
