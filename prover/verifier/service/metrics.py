"""What the service counts: requests by endpoint and status code, verdicts by status, the queue,
and latency percentiles; rendered as Prometheus text (``/metrics``) or JSON (``/stats``)."""

from __future__ import annotations

import collections
import math
import threading
import time

WINDOW = 10_000  # latencies kept for the percentiles: the most recent ones
QUANTILES = (0.5, 0.9, 0.99)


def quantile(sorted_values: list[float], q: float) -> float:
    """The q-quantile of already sorted values (nearest rank), 0.0 when there are none."""
    if not sorted_values:
        return 0.0
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


class Latencies:
    """Count, sum and the last ``WINDOW`` observations (seconds)."""

    def __init__(self) -> None:
        self.count, self.total = 0, 0.0
        self.recent: collections.deque[float] = collections.deque(maxlen=WINDOW)

    def observe(self, seconds: float) -> None:
        self.count += 1
        self.total += seconds
        self.recent.append(seconds)

    def summary(self) -> dict[str, float]:
        values = sorted(self.recent)
        return {
            "count": self.count,
            "sum": round(self.total, 6),
            **{f"p{round(q * 100):d}": round(quantile(values, q), 6) for q in QUANTILES},
        }


class Metrics:
    """Counters and latencies, updated from the event loop and read from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.started = time.time()
        self.requests: collections.Counter[tuple[str, int]] = collections.Counter()
        self.verdicts: collections.Counter[str] = collections.Counter()
        self.disconnects = 0
        self.proof_latency = Latencies()  # admission to verdict
        self.request_latency = Latencies()  # first byte in to answer out
        self.queue_depth = 0
        self.queue_limit = 0

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, status)] += 1
            self.request_latency.observe(seconds)

    def verdict(self, status: str, seconds: float) -> None:
        with self._lock:
            self.verdicts[status] += 1
            self.proof_latency.observe(seconds)

    def disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "uptime_s": round(time.time() - self.started, 3),
                "requests": [{"endpoint": e, "status": s, "count": n} for (e, s), n in sorted(self.requests.items())],
                "verdicts": dict(sorted(self.verdicts.items())),
                "client_disconnects": self.disconnects,
                "queue": {"depth": self.queue_depth, "limit": self.queue_limit},
                "proof_latency_s": self.proof_latency.summary(),
                "request_latency_s": self.request_latency.summary(),
            }

    def prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        s = self.snapshot()
        out = [
            "# HELP prover_service_requests_total HTTP requests answered, by endpoint and status code.",
            "# TYPE prover_service_requests_total counter",
        ]
        out += [
            f'prover_service_requests_total{{endpoint="{r["endpoint"]}",code="{r["status"]}"}} {r["count"]}'
            for r in s["requests"]
        ]
        out += [
            "# HELP prover_service_verdicts_total Verdicts reached, by status.",
            "# TYPE prover_service_verdicts_total counter",
        ]
        out += [f'prover_service_verdicts_total{{status="{k}"}} {v}' for k, v in s["verdicts"].items()]
        out += [
            "# HELP prover_service_client_disconnects_total Requests whose caller left before the answer.",
            "# TYPE prover_service_client_disconnects_total counter",
            f"prover_service_client_disconnects_total {s['client_disconnects']}",
            "# HELP prover_service_queue_depth Proofs admitted and not yet answered.",
            "# TYPE prover_service_queue_depth gauge",
            f"prover_service_queue_depth {s['queue']['depth']}",
            "# HELP prover_service_queue_limit Proofs admitted at most (service.max_queue).",
            "# TYPE prover_service_queue_limit gauge",
            f"prover_service_queue_limit {s['queue']['limit']}",
        ]
        for name, key, what in (
            ("proof_latency_seconds", "proof_latency_s", "Admission to verdict, per proof"),
            ("request_latency_seconds", "request_latency_s", "Request in to answer out"),
        ):
            summary = s[key]
            out += [
                f"# HELP prover_service_{name} {what} (quantiles over the last {WINDOW}).",
                f"# TYPE prover_service_{name} summary",
            ]
            out += [f'prover_service_{name}{{quantile="{q}"}} {summary[f"p{round(q * 100):d}"]}' for q in QUANTILES]
            out += [f"prover_service_{name}_sum {summary['sum']}", f"prover_service_{name}_count {summary['count']}"]
        return "\n".join(out) + "\n"
