"""The unmodified kimina-client 0.2.1 from the package index, in a process of its own, against the
service on loopback (the REPL pool on the REPL double): its ``check()`` sends batches concurrently
and merges them as they complete; every snippet comes back once, with the status its own
``analyze()`` gives for our verdict, and the verdict itself rides along in a field it ignores.

kimina-client needs Python >= 3.12 (pydantic refuses its ``typing.TypedDict`` below that) and imports
pygments without declaring it, so it lives in a small venv of its own: ``.ci/run`` builds it at
``.cache/kimina-client``; ``$PROVER_KIMINA_PYTHON`` points elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the service tests need the service extra: pip install -e .[service]")
pytest.importorskip("fastapi", reason="the service tests need the service extra: pip install -e .[service]")

from prover.verifier import LeanPool, VerifierConfig  # noqa: E402
from prover.verifier.service.app import create_app  # noqa: E402
from prover.verifier.service.config import ServiceConfig  # noqa: E402
from prover.verifier.service.server import ServiceThread  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DRIVER = Path(__file__).with_name("kimina_client_driver.py")
DOUBLE = str(Path(__file__).with_name("repl_double.py"))
KIMINA_PYTHON = Path(os.environ.get("PROVER_KIMINA_PYTHON") or ROOT / ".cache" / "kimina-client" / "bin" / "python")
KEY = "kimina-key"

pytestmark = pytest.mark.skipif(
    not KIMINA_PYTHON.is_file(),
    reason=f"needs kimina-client 0.2.1 in a Python >= 3.12 venv at {KIMINA_PYTHON} (bash .ci/run builds it; "
    f"or: python3.12 -m venv .cache/kimina-client && .cache/kimina-client/bin/pip install kimina-client==0.2.1 "
    f"pygments; or set PROVER_KIMINA_PYTHON)",
)

GOEDEL_HEADER = (
    "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"
)


def code(i: int, tactic: str) -> str:
    return (
        f"{GOEDEL_HEADER}/- problem {i} -/\ntheorem lean_workbook_{i} (a b : ℝ) (h : a = b) : b = a := by\n{tactic}\n"
    )


# (tactic or whole file, the status kimina-client's analyze() gives, our verdict's status and check)
MIX = [
    ("  linarith", "valid", "proved", "axioms"),
    ("  nlinarith [sq_nonneg (a - b)]", "valid", "proved", "axioms"),
    ("  linarith -- double:error", "lean_error", "rejected", "lean"),
    ("  sorry", "sorry", "rejected", "screen"),
    ("  linarith -- double:sorry", "sorry", "rejected", "sorry"),
    ("  linarith -- double:silent_sorry", "sorry", "rejected", "axioms"),  # Kimina alone would say valid
    ("  linarith -- double:axiom=Classical.em_fake", "lean_error", "rejected", "axioms"),  # and here
    ("  native_decide", "lean_error", "rejected", "screen"),
    ("  linarith -- double:hang", "timeout_error", "timeout", "timeout"),
    ("  linarith -- double:exit", "server_error", "error", "infra"),
    ("  linarith -- double:garbage", "server_error", "error", "infra"),
    ("import Mathlib\n#check Nat\n", "lean_error", "rejected", "screen"),
    ("import Mathlib\ndef f : ℕ := 1\n", "server_error", "error", "statement"),
    (
        "import Mathlib\nlemma aux (x : ℝ) : 0 ≤ x ^ 2 := by positivity -- double:axiom=Fake\n"
        "theorem uses_aux (x : ℝ) : 0 ≤ x ^ 2 := aux x\n",
        "lean_error",
        "rejected",
        "axioms",
    ),
]


def drive(url: str, snippets: list[dict], api_key: str | None, **kw) -> dict:
    job = {
        "url": url,
        "api_key": api_key,
        "snippets": snippets,
        "batch_size": 3,
        "max_workers": 4,
        "timeout": 60,
        "n_retries": 3,
        **kw,
    }
    done = subprocess.run(
        [str(KIMINA_PYTHON), str(DRIVER)],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LEAN_SERVER_API_KEY")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def service():
    config = VerifierConfig(repl_command=[sys.executable, DOUBLE], workers=3, timeout=2.0, start_timeout=20.0)
    with LeanPool(config) as pool:
        app = create_app(pool, ServiceConfig(api_key=KEY, max_batch=16), config)
        with ServiceThread(app) as url:
            yield url, app


def test_kimina_client_reads_our_answers_as_analyze_expects(service):
    url, app = service
    tag = uuid.uuid4().hex[:8]  # fresh proofs: nothing from the cache
    snippets = [
        {"id": f"{tag}-{i}", "code": text if text.startswith("import") else code(i, f"{text} -- {tag}")}
        for i, (text, *_) in enumerate(MIX)
    ]
    before = app.state.metrics.snapshot()
    report = drive(url, snippets, KEY)
    assert report["version"] == "0.2.1" and report["python"] >= "3.12"
    assert report["health"]["status"] == "ok"
    expected = {s["id"]: m[1] for s, m in zip(snippets, MIX)}
    for mode in ("sync", "async"):
        results = report[mode]
        # batches of 3 run 4 at a time and are merged as they complete: each snippet comes back once
        assert sorted(Counter(r["id"] for r in results).items()) == sorted((s["id"], 1) for s in snippets)
        assert {r["id"]: r["status"] for r in results} == expected, mode
    timed_out = next(r for r in report["sync"] if expected[r["id"]] == "timeout_error")
    assert "timed out" in timed_out["error"]
    # one POST per batch (5 batches, twice), none retried by the client
    requests = Counter({(r["endpoint"], r["status"]): r["count"] for r in app.state.metrics.snapshot()["requests"]})
    old = Counter({(r["endpoint"], r["status"]): r["count"] for r in before["requests"]})
    assert requests[("/api/check", 200)] - old[("/api/check", 200)] == 2 * 5
    assert (
        sum(n for (e, s), n in requests.items() if e == "/api/check")
        - sum(n for (e, s), n in old.items() if e == "/api/check")
        == 10
    )
    # the older endpoint, read by the package's own helpers: only honest proofs are valid
    assert [(r["custom_id"], r["is_valid_no_sorry"]) for r in report["verify"]] == [
        (s["id"], m[1] == "valid") for s, m in zip(snippets[:3], MIX[:3])
    ]


def test_our_verdicts_ride_along_in_a_field_the_client_ignores(service):
    url, _ = service
    tag = uuid.uuid4().hex[:8]
    snippets = [
        {"id": f"v{i}", "code": text if text.startswith("import") else code(i, f"{text} -- {tag}")}
        for i, (text, *_) in enumerate(MIX)
    ]
    answer = httpx.post(
        url + "/api/check", json={"snippets": snippets}, headers={"Authorization": f"Bearer {KEY}"}, timeout=120
    ).json()
    assert [(r["verdict"]["status"], r["verdict"]["check"]) for r in answer["results"]] == [(m[2], m[3]) for m in MIX]
    assert answer["results"][-1]["verdict"]["theorems"] == ["aux", "uses_aux"]


def test_a_wrong_key_fails_every_snippet_as_a_server_error(service):
    url, _ = service
    report = drive(url, [{"id": "k", "code": code(0, "  linarith")}], "wrong", n_retries=1)
    assert report["health"]["status"] == "ok"  # /health needs no key, as on Kimina's server
    assert [r["status"] for r in report["sync"]] == ["server_error"] and "failed" in report["sync"][0]["error"]
    assert report["verify"] == 401
