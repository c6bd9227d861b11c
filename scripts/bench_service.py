"""Throughput and latency of the verification service against the in-process pool, at the same worker
count on the REPL double at a fixed cost per proof (asleep, so 8 workers fit on 2 cores).

Two loads, each a fixed number of distinct proofs (the cache would answer repeats), so every run
stops by itself; a run that passes --max-seconds is abandoned and the service stopped:

* batch: one caller sends everything at once (``check_batch``; over HTTP split into requests of the
  service's max_batch), as a trainer's reward function does;
* closed loop: --callers coroutines each check one proof at a time (``await check``; over HTTP the
  checks made at the same moment share a request), giving per-proof latency percentiles.

The service runs as ``python -m prover.verify serve`` in a process of its own on 127.0.0.1 (never any
other address) and is reached through ``RemoteVerifier``. Target: HTTP throughput within 10% of
in-process at 8 workers.

    python scripts/bench_service.py [--cost 0.1] [--workers 8] [--proofs 400] [--callers 16] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from prover.verifier import LeanPool, ProofRequest, Verifier, VerifierConfig
from prover.verifier.http import RemoteVerifier
from prover.verifier.service.metrics import quantile

ROOT = Path(__file__).resolve().parent.parent
DOUBLE = ROOT / "tests" / "repl_double.py"
HEADER = "import Mathlib\nimport Aesop\n"
STATEMENT = "theorem bench (a b : ℝ) (h₀ : 0 < a ∧ 0 < b) (h₁ : a + b = 1) : a * b ≤ 1 / 4 := by\n"
LOOPBACK = "127.0.0.1"


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cost", type=float, default=0.1, help="seconds each proof costs the double (asleep)")
    parser.add_argument("--workers", type=int, default=8, help="REPL workers, in-process and behind the service")
    parser.add_argument("--proofs", type=int, default=400, help="proofs per measurement")
    parser.add_argument("--callers", type=int, default=0, help="closed-loop callers (default: 2 x workers)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest counts")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="abandon a run that takes longer")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser


def requests(n: int) -> list[ProofRequest]:
    tag = uuid.uuid4().hex[:8]
    return [
        ProofRequest(
            STATEMENT, f"  nlinarith [sq_nonneg (a - b), sq_nonneg (a + b), h₀.1, h₀.2]  -- {tag} {i}", HEADER, "bench"
        )
        for i in range(n)
    ]


def batch_run(verifier: Verifier, n: int, limit: float) -> dict:
    batch = requests(n)
    start = time.perf_counter()
    verdicts = asyncio.run(asyncio.wait_for(verifier.check_many(batch), limit))
    elapsed = time.perf_counter() - start
    assert all(v.proved for v in verdicts), [v for v in verdicts if not v.proved][:3]
    return {"proofs": n, "seconds": elapsed, "proofs_per_s": n / elapsed}


def closed_loop_run(verifier: Verifier, n: int, callers: int, limit: float) -> dict:
    todo = requests(n)
    latencies: list[float] = []

    async def caller() -> None:
        while todo:
            request = todo.pop()
            start = time.perf_counter()
            verdict = await verifier.check(request)
            latencies.append(time.perf_counter() - start)
            assert verdict.proved, verdict

    async def load() -> None:
        await asyncio.gather(*(caller() for _ in range(callers)))

    start = time.perf_counter()
    asyncio.run(asyncio.wait_for(load(), limit))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "proofs": n,
        "seconds": elapsed,
        "proofs_per_s": n / elapsed,
        "p50_ms": 1000 * quantile(latencies, 0.5),
        "p99_ms": 1000 * quantile(latencies, 0.99),
    }


def best(runs: list[dict]) -> dict:
    """The fastest run: other load on the machine only ever slows a run down."""
    return min(runs, key=lambda r: r["seconds"])


class LocalService:
    """``python -m prover.verify serve`` on 127.0.0.1 in a process of its own; stopped by SIGTERM."""

    def __init__(self, pool_args: list[str], workers: int):
        command = [
            sys.executable,
            "-m",
            "prover.verify",
            "serve",
            "--service.host",
            LOOPBACK,
            "--service.port",
            "0",
            "--service.max_queue",
            "100000",
            "--verifier.repl_command",
            json.dumps(pool_args),
            "--verifier.workers",
            str(workers),
            "--verifier.timeout",
            "60",
            "--verifier.max_checks_per_worker",
            "100000",
        ]
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        line = self.process.stdout.readline()
        if not line.startswith(f"serving on http://{LOOPBACK}:"):
            self.stop()
            raise RuntimeError(f"the service did not start: {line!r}")
        self.url = line.split()[2]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def measure(verifier: Verifier, args: argparse.Namespace, callers: int) -> dict:
    verifier.check_batch(requests(args.workers))  # start every worker before the clock runs
    return {
        "batch": best([batch_run(verifier, args.proofs, args.max_seconds) for _ in range(args.repeat)]),
        "closed_loop": best(
            [closed_loop_run(verifier, args.proofs, callers, args.max_seconds) for _ in range(args.repeat)]
        ),
    }


def main(argv: list[str] | None = None) -> dict:
    logging.basicConfig(level=logging.WARNING)
    args = make_parser().parse_args(argv)
    callers = args.callers or 2 * args.workers
    pool_args = [sys.executable, str(DOUBLE), "--cost", str(args.cost)]
    config = VerifierConfig(repl_command=pool_args, workers=args.workers, timeout=60, max_checks_per_worker=100_000)
    with LeanPool(config) as pool:
        local = measure(pool, args, callers)
    service = LocalService(pool_args, args.workers)
    try:
        with RemoteVerifier(VerifierConfig(backend="http", url=service.url, max_pending=callers)) as remote:
            http = measure(remote, args, callers)
    finally:
        service.stop()
    print(
        f"REPL double, {args.cost * 1000:.0f} ms per proof asleep, {args.workers} workers, {args.proofs} proofs "
        f"per run, best of {args.repeat}; closed loop: {callers} callers, one proof each at a time"
    )
    print(
        f"{'load':<12} {'path':<11} {'seconds':>8} {'proofs/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'HTTP/in-process':>16}"
    )
    for load in ("batch", "closed_loop"):
        for path, row in (("in-process", local[load]), ("HTTP", http[load])):
            ratio = f"{row['proofs_per_s'] / local[load]['proofs_per_s']:.1%}" if path == "HTTP" else ""
            p50, p99 = (f"{row[k]:.1f}" if k in row else "-" for k in ("p50_ms", "p99_ms"))
            print(
                f"{load:<12} {path:<11} {row['seconds']:>8.2f} {row['proofs_per_s']:>9.1f} {p50:>8} {p99:>8} {ratio:>16}"
            )
    ratios = {load: http[load]["proofs_per_s"] / local[load]["proofs_per_s"] for load in ("batch", "closed_loop")}
    print(
        "target (HTTP throughput >= 90% of in-process): "
        + ", ".join(f"{load} {'met' if r >= 0.9 else 'MISSED'} ({r:.1%})" for load, r in ratios.items())
    )
    result = {
        "cost_s": args.cost,
        "workers": args.workers,
        "proofs": args.proofs,
        "callers": callers,
        "in_process": local,
        "http": http,
        "http_over_in_process": ratios,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
