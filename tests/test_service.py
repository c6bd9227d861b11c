"""The verification service on loopback in front of the REPL pool (on the REPL double): our endpoint
gives what ``check_batch`` gives, the cache is shared, bad input gets its status code and disturbs
nothing, the queue is bounded, shutdown answers what it accepted, metrics count it all."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the service tests need the service extra: pip install -e .[service]")
pytest.importorskip("fastapi", reason="the service tests need the service extra: pip install -e .[service]")

from processes import tagged, wait_until  # noqa: E402

from prover.verifier import LeanPool, ProofRequest, VerifierConfig  # noqa: E402
from prover.verifier.service.app import create_app  # noqa: E402
from prover.verifier.service.config import ServiceConfig  # noqa: E402
from prover.verifier.service.server import ServiceThread  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOUBLE = str(Path(__file__).with_name("repl_double.py"))
KEY = "s3cret"
HEADER = "import Mathlib\nimport Aesop\n"
STATEMENT = "theorem t (a b : ℝ) (h : a = b) : b = a := by\n"


def pool_config(tag: str = "", **kw) -> VerifierConfig:
    args = [sys.executable, DOUBLE] + (["--tag", tag] if tag else [])
    return VerifierConfig(repl_command=args, **{"workers": 2, "timeout": 2.0, "start_timeout": 20.0, **kw})


def proof(text: str) -> dict:
    return {"statement": STATEMENT, "proof": text, "header": HEADER, "name": "t"}


def snippet(sid: str, tactic: str) -> dict:
    return {"id": sid, "code": HEADER + STATEMENT + tactic}


class Service:
    """A pool on the double and the service in front of it, on a thread of this process."""

    def __init__(self, service: ServiceConfig, **pool_kw):
        self.config = pool_config(**pool_kw)
        self.pool = LeanPool(self.config)
        self.app = create_app(self.pool, service, self.config)
        self.thread = ServiceThread(self.app, shutdown_grace=service.shutdown_grace)
        self.url = self.thread.__enter__()
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)

    def stats(self) -> dict:
        return self.client.get("/stats").json()

    def close(self) -> None:
        self.client.close()
        self.thread.stop()
        self.pool.close()


@pytest.fixture(scope="module")
def service():
    svc = Service(ServiceConfig(api_key=KEY, max_batch=8, max_snippet_bytes=4096, max_body_mb=1, max_queue=16))
    yield svc
    svc.close()


def test_v1_verify_answers_what_check_batch_gives(service):
    tactics = [
        "  linarith",
        "  linarith -- double:error",
        "  sorry",
        "  linarith -- double:silent_sorry",
        "  linarith -- double:axiom=Fake",
        "  linarith -- double:hang",
        "  linarith -- double:exit",
    ]
    tactics = [f"{t} -- v1 {uuid.uuid4().hex}" for t in tactics]
    answer = service.client.post("/v1/verify", json={"requests": [proof(t) for t in tactics]})
    assert answer.status_code == 200
    remote = answer.json()["verdicts"]
    local = service.pool.check_batch([ProofRequest(STATEMENT, t, HEADER, "t") for t in tactics])
    assert len(remote) == len(tactics)
    for r, v in zip(remote, local):  # the same verdict (the local one may come from the cache now)
        assert (r["status"], r["check"], r["reason"], r["messages"]) == (v.status.value, v.check, v.reason, v.messages)
    assert [r["status"] for r in remote] == [
        "proved",
        "rejected",
        "rejected",
        "rejected",
        "rejected",
        "timeout",
        "error",
    ]


def test_the_verdict_cache_is_shared_across_requests(service):
    tactic = f"  linarith -- shared {uuid.uuid4().hex}"
    first = service.client.post("/v1/verify", json={"requests": [proof(tactic)]}).json()["verdicts"][0]
    second = service.client.post("/v1/verify", json={"requests": [proof(tactic)]}).json()["verdicts"][0]
    assert first["status"] == "proved" and not first["cached"] and second["cached"]
    snippets = [snippet("a", tactic), snippet("b", tactic)]  # one check serves both, and the next request
    once = service.client.post("/api/check", json={"snippets": snippets}).json()["results"]
    again = service.client.post("/api/check", json={"snippets": snippets[:1]}).json()["results"]
    assert [r["verdict"]["cached"] for r in once] == [False, True] and again[0]["verdict"]["cached"]


def test_kimina_routes_answer_in_input_order(service):
    tag = uuid.uuid4().hex
    snippets = [snippet(f"s{i}", f"  linarith -- {tag} {i}" + (" double:error" if i % 2 else "")) for i in range(6)]
    results = service.client.post("/api/check/", json={"snippets": snippets, "timeout": 20}).json()["results"]
    assert [r["id"] for r in results] == [s["id"] for s in snippets]
    assert [r["verdict"]["status"] for r in results] == ["proved", "rejected"] * 3
    codes = [{"custom_id": i, "proof": s["code"]} for i, s in enumerate(snippets[:2])] + [
        {"custom_id": "c", "code": snippets[2]["code"]}
    ]
    for route in ("/verify", "/one_pass_verify_batch"):
        backward = service.client.post(route, json={"codes": codes}).json()["results"]
        assert [r["custom_id"] for r in backward] == ["0", "1", "c"]
        assert [r["verdict"]["status"] for r in backward] == ["proved", "rejected", "proved"]
        assert all("time" in r["response"] for r in backward)


def _post_raw(url: str, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url + path, content=body, headers=headers, timeout=30)


def _chunks(size: int):
    for _ in range(size // 65536 + 1):
        yield b"x" * 65536


BAD_INPUT = [
    # (what, path, body, headers, status, words in the answer)
    ("malformed JSON", "/api/check", b'{"snippets": [', {}, 422, "json"),
    ("no snippets field", "/api/check", b'{"timeout": 5}', {}, 422, "snippets"),
    ("a snippet without code", "/api/check", b'{"snippets": [{"id": "a"}]}', {}, 422, "code"),
    ("an id that is not a string", "/api/check", b'{"snippets": [{"id": 1, "code": "x"}]}', {}, 422, "id"),
    (
        "two snippets with one id",
        "/api/check",
        json.dumps({"snippets": [snippet("a", "  rfl")] * 2}).encode(),
        {},
        422,
        "unique",
    ),
    ("no snippets at all", "/api/check", b'{"snippets": []}', {}, 422, "non empty"),
    (
        "an info tree",
        "/api/check",
        json.dumps({"snippets": [snippet("a", "  rfl")], "infotree": "full"}).encode(),
        {},
        422,
        "infotree",
    ),
    ("a code with neither proof nor code", "/verify", b'{"codes": [{"custom_id": 1}]}', {}, 422, "neither"),
    (
        "an unknown field in our endpoint",
        "/v1/verify",
        json.dumps({"requests": [{**proof("  rfl"), "stmt": "x"}]}).encode(),
        {},
        422,
        "stmt",
    ),
    (
        "a request without a proof",
        "/v1/verify",
        json.dumps({"requests": [{"statement": STATEMENT}]}).encode(),
        {},
        422,
        "proof",
    ),
    (
        "too many snippets",
        "/api/check",
        json.dumps({"snippets": [snippet(f"s{i}", "  rfl") for i in range(9)]}).encode(),
        {},
        413,
        "max_batch",
    ),
    (
        "a snippet too long",
        "/api/check",
        json.dumps({"snippets": [snippet("long", "  rfl" + " " * 5000)]}).encode(),
        {},
        413,
        "'long'",
    ),
    ("too many proofs", "/v1/verify", json.dumps({"requests": [proof("  rfl")] * 9}).encode(), {}, 413, "max_batch"),
    ("a body over the limit", "/api/check", b"x" * (1 << 20 | 1), {}, 413, "max_body_mb"),
    (
        "no API key",
        "/api/check",
        json.dumps({"snippets": [snippet("a", "  rfl")]}).encode(),
        {"Authorization": ""},
        401,
        "API key",
    ),
    (
        "a wrong API key",
        "/v1/verify",
        json.dumps({"requests": [proof("  rfl")]}).encode(),
        {"Authorization": "Bearer nope"},
        401,
        "API key",
    ),
    ("malformed JSON without a key", "/api/check", b"{", {"Authorization": "Bearer nope"}, 401, "API key"),
    ("metrics without a key", "/metrics", b"", {"Authorization": ""}, 401, "API key"),
]


@pytest.mark.parametrize("what, path, body, headers, status, words", BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_gets_its_status_code_and_disturbs_nothing(service, what, path, body, headers, status, words):
    before = service.stats()["verdicts"]
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json", **headers}
    answer = _post_raw(service.url, path, body, {k: v for k, v in headers.items() if v})
    assert answer.status_code == status, answer.text
    assert words.lower() in answer.text.lower()
    assert len(answer.content) < 4096  # the reason, not an echo of the body
    assert service.stats()["verdicts"] == before  # nothing was checked
    good = service.client.post("/v1/verify", json={"requests": [proof(f"  linarith -- after {what}")]})
    assert good.status_code == 200 and good.json()["verdicts"][0]["status"] == "proved"


def test_a_chunked_body_over_the_limit_is_cut_off(service):
    answer = httpx.post(
        service.url + "/api/check",
        content=_chunks(1 << 20),
        timeout=30,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 413 and "max_body_mb" in answer.text


def test_health_needs_no_key_and_reports_the_limits(service):
    health = httpx.get(service.url + "/health").json()
    assert health["status"] == "ok" and health["limits"]["max_batch"] == 8 and health["queue"]["limit"] == 16


def _send_and_leave(url: str, body: bytes, declared: int) -> None:
    """Send a request's headers and ``body`` (of ``declared`` bytes announced), then hang up."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(
            f"POST /v1/verify HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {declared}\r\n\r\n".encode()
            + body
        )
        time.sleep(0.2)


def test_a_caller_that_leaves_mid_body_disturbs_nothing(service):
    left = service.stats()["client_disconnects"]
    _send_and_leave(service.url, b'{"requests": [', 1000)
    assert wait_until(lambda: service.stats()["client_disconnects"] == left + 1, 10)
    assert (
        service.client.post("/v1/verify", json={"requests": [proof("  linarith -- after a hang-up")]}).status_code
        == 200
    )


def test_a_caller_that_leaves_mid_check_still_gets_its_proof_cached(service):
    tactic = f"  linarith -- double:slow=0.5 left {uuid.uuid4().hex}"
    body = json.dumps({"requests": [proof(tactic)]}).encode()
    proved = service.stats()["verdicts"].get("proved", 0)
    _send_and_leave(service.url, body, len(body))
    assert wait_until(lambda: service.stats()["verdicts"].get("proved", 0) == proved + 1, 20)
    assert wait_until(lambda: service.stats()["queue"]["depth"] == 0, 10)
    again = service.client.post("/v1/verify", json={"requests": [proof(tactic)]}).json()["verdicts"][0]
    assert again["status"] == "proved" and again["cached"]


def test_metrics_count_requests_verdicts_and_latency(service):
    tag = uuid.uuid4().hex
    before = service.stats()
    service.client.post(
        "/v1/verify", json={"requests": [proof(f"  linarith -- {tag}"), proof(f"  linarith -- {tag} double:error")]}
    )
    after = service.stats()
    assert after["verdicts"]["proved"] == before["verdicts"]["proved"] + 1
    assert after["verdicts"]["rejected"] == before["verdicts"].get("rejected", 0) + 1
    assert after["proof_latency_s"]["count"] == before["proof_latency_s"]["count"] + 2
    text = service.client.get("/metrics").text
    assert f'prover_service_verdicts_total{{status="proved"}} {after["verdicts"]["proved"]}' in text
    assert 'prover_service_requests_total{endpoint="/v1/verify",code="200"}' in text
    assert 'prover_service_proof_latency_seconds{quantile="0.99"}' in text and "prover_service_queue_depth 0" in text


def test_a_full_queue_answers_503_with_retry_after_then_takes_the_request():
    svc = Service(ServiceConfig(api_key=KEY, max_batch=2, max_queue=2, retry_after=3))
    try:
        slow = [proof(f"  linarith -- double:slow=1.0 {i} {uuid.uuid4().hex}") for i in range(2)]
        answers = []
        first = threading.Thread(target=lambda: answers.append(svc.client.post("/v1/verify", json={"requests": slow})))
        first.start()
        assert wait_until(lambda: svc.stats()["queue"]["depth"] == 2, 10)
        busy = svc.client.post("/v1/verify", json={"requests": [proof("  linarith -- waits")]})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "3" and "queue full" in busy.text
        first.join(30)
        assert [v["status"] for v in answers[0].json()["verdicts"]] == ["proved", "proved"]
        assert svc.client.post("/v1/verify", json={"requests": [proof("  linarith -- waits")]}).status_code == 200
    finally:
        svc.close()


def serve(tag: str, *extra: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """``python -m prover.verify serve`` on a free port, the REPL double as its Lean; (process, url)."""
    command = [
        sys.executable,
        "-m",
        "prover.verify",
        "serve",
        "--service.port",
        "0",
        "--verifier.repl_command",
        json.dumps([sys.executable, DOUBLE, "--tag", tag]),
        "--verifier.workers",
        "2",
        "--verifier.start_timeout",
        "20",
        *extra,
    ]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    line = process.stdout.readline()
    if not line.startswith("serving on "):
        process.kill()
        raise AssertionError(f"serve did not start: {line!r} {process.stderr.read()}")
    return process, line.split()[2]


def test_sigterm_answers_every_accepted_request_then_exits_leaving_no_process():
    tag = uuid.uuid4().hex
    process, url = serve(tag, "--service.shutdown_grace", "2", "--verifier.timeout", "60")
    try:
        answers = []
        batch = {"requests": [proof("  linarith -- double:slow=0.5"), proof("  linarith -- double:hang")]}
        caller = threading.Thread(target=lambda: answers.append(httpx.post(url + "/v1/verify", json=batch, timeout=60)))
        caller.start()
        # the slow proof is done, the hung one is not
        assert wait_until(lambda: httpx.get(url + "/stats").json()["verdicts"].get("proved") == 1, 20)
        process.send_signal(signal.SIGTERM)
        caller.join(30)
        verdicts = answers[0].json()["verdicts"]
        assert answers[0].status_code == 200 and [v["status"] for v in verdicts] == ["proved", "error"]
        assert "shut down" in verdicts[1]["reason"]
        assert process.wait(30) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(url + "/health")
    finally:
        process.kill()
    assert wait_until(lambda: not tagged(tag), 10), tagged(tag)


@pytest.mark.parametrize(
    "args, env, words",
    [
        (["--service.nope", "1"], {}, "unknown option --service.nope"),
        (["--service.max_queue", "4", "--service.max_batch", "8"], {}, "max_queue=4 < max_batch=8"),
        (["--verifier.backend", "http", "--verifier.url", "http://127.0.0.1:1"], {}, "another one"),
        (["--service.host", "203.0.113.7"], {}, "cannot listen on 203.0.113.7"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line(args, env, words):
    done = subprocess.run(
        [sys.executable, "-m", "prover.verify", "serve", "--service.port", "0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    assert done.returncode == 2 and words in done.stderr, done.stderr
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr


def test_serve_without_lean_names_the_fix(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PROVER_LEAN_PROJECT"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "prover.verify",
            "serve",
            "--service.port",
            "0",
            "--verifier.lean_project",
            str(tmp_path / "no_lean"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 2 and done.stderr.startswith("error: verifier:") and "no_lean" in done.stderr


def test_serve_on_a_taken_port_says_so():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "prover.verify", "serve", "--service.port", str(port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    assert done.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in done.stderr
