"""What only a remote verifier (verifier.backend=http) meets: a split batch, a busy or vanished service,
a refused key, and the evaluator end to end through it. The behavioural tests the pool passes (input
order, one verdict per request under any fault, faults as error, timeouts, the async and blocking APIs,
backpressure, close) run on ``RemoteVerifier`` too: the ``KINDS`` tests in test_verifier_pool.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx", reason="the service tests need the service extra: pip install -e .[service]")
pytest.importorskip("fastapi", reason="the service tests need the service extra: pip install -e .[service]")

from test_verifier_pool import config, request, served, verifier_of  # noqa: E402

from prover.data.problem import Problem  # noqa: E402
from prover.verifier import LeanPool, LeanSetupError, Status, VerifierConfig, make_verifier  # noqa: E402
from prover.verifier.http import RemoteVerifier, ServiceUnavailableError  # noqa: E402
from prover.verifier.service.app import create_app  # noqa: E402
from prover.verifier.service.config import ServiceConfig  # noqa: E402
from prover.verifier.service.server import ServiceThread  # noqa: E402


def test_a_batch_larger_than_the_service_takes_is_split_in_order():
    proofs = [f"  linarith -- split {i}" + (" double:error" if i % 4 == 0 else "") for i in range(11)]
    with verifier_of("http", config(workers=2), ServiceConfig(max_batch=3)) as remote:
        verdicts = remote.check_batch([request(p) for p in proofs])
    assert [v.status for v in verdicts] == [Status.REJECTED if i % 4 == 0 else Status.PROVED for i in range(11)]


def test_single_checks_made_together_share_one_request():
    with served(config(workers=2)) as (url, _):
        with RemoteVerifier(VerifierConfig(backend="http", url=url)) as remote:

            async def together():  # on the verifier's loop: ten checks in one turn of it
                return await asyncio.gather(*(remote._check(request(f"  linarith -- together {i}")) for i in range(10)))

            verdicts = remote._run(together())
        posts = sum(r["count"] for r in httpx.get(url + "/stats").json()["requests"] if r["endpoint"] == "/v1/verify")
    assert all(v.proved for v in verdicts) and posts == 1


def test_a_busy_service_is_waited_for_as_retry_after_says():
    service = ServiceConfig(max_batch=2, max_queue=2, retry_after=1)
    with served(config(workers=2), service) as (url, _):
        with RemoteVerifier(VerifierConfig(backend="http", url=url)) as remote:
            # three POSTs of two at once: the queue takes one, the others get 503 and come back
            verdicts = remote.check_batch([request(f"  linarith -- busy {i} double:slow=0.3") for i in range(6)])
        stats = httpx.get(url + "/stats").json()
    assert all(v.proved for v in verdicts)
    assert any(r["status"] == 503 for r in stats["requests"]), stats["requests"]


def test_an_unreachable_service_raises_when_the_verifier_is_made():
    with pytest.raises(ServiceUnavailableError, match="cannot reach the verification service at http://127.0.0.1:9"):
        make_verifier(VerifierConfig(backend="http", url="http://127.0.0.1:9"))


def test_a_service_that_goes_away_raises_instead_of_giving_verdicts(monkeypatch):
    monkeypatch.setattr("prover.verifier.http.RETRIES", 2)
    pool_config = config()
    with LeanPool(pool_config) as pool:
        thread = ServiceThread(create_app(pool, ServiceConfig(), pool_config))
        url = thread.__enter__()
        with RemoteVerifier(VerifierConfig(backend="http", url=url)) as remote:
            assert remote.check_batch([request("  linarith")])[0].proved
            thread.stop()
            with pytest.raises(ServiceUnavailableError, match="failed 2 times in a row"):
                remote.check_batch([request("  linarith -- after the service left")])


def test_a_refused_api_key_fails_when_the_verifier_is_made(monkeypatch):
    pool_config = config()
    with served(pool_config, ServiceConfig(api_key="right")) as (url, _):
        monkeypatch.setenv("LEAN_SERVER_API_KEY", "wrong")
        with pytest.raises(LeanSetupError, match="refused the API key"):
            RemoteVerifier(VerifierConfig(backend="http", url=url))
        monkeypatch.setenv("LEAN_SERVER_API_KEY", "right")
        with RemoteVerifier(VerifierConfig(backend="http", url=url)) as remote:
            assert remote.check_batch([request("  linarith")])[0].proved


def test_verify_cli_checks_a_file_through_the_service(tmp_path, capsys):
    from prover.verify import main

    lines = [
        {
            "name": "t",
            "statement": "theorem t (a b : ℝ) (h : a = b) : b = a := by\n",
            "proof": f"  linarith -- {d}",
            "header": "import Mathlib\n",
        }
        for d in ("cli", "cli double:error", "cli double:hang")
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with served(config(workers=2, timeout=1.0)) as (url, _):
        code = main(
            [str(tmp_path / "in.jsonl"), "--out", str(tmp_path / "out.jsonl"), "--backend", "http", "--url", url]
        )
    out = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert code == 0 and [r["status"] for r in out] == ["proved", "rejected", "timeout"]


def test_backend_http_needs_a_url():
    with pytest.raises(ValueError, match="backend=http needs url"):
        VerifierConfig(backend="http")


class ListSampler:
    """Fixed completions, repeated as needed."""

    def __init__(self, texts):
        self.texts = texts

    def generate(self, prompts, params):
        from prover.sampling.base import Completion

        return [
            [Completion(self.texts[i % len(self.texts)], [1, 2], -1.0, -0.5, "stop") for i in range(params.n)]
            for _ in prompts
        ]

    def close(self):
        pass


def test_the_evaluator_runs_end_to_end_through_the_service(tmp_path):
    """The Lean task's evaluator with --verifier.backend http: the same records as with the local pool."""
    from prover.eval.records import RESULTS_FILE
    from prover.eval.runner import evaluate
    from prover.tasks.base import TaskConfig
    from prover.tasks.lean import LeanTask

    task = LeanTask(TaskConfig(name="lean"))
    header = (
        "import Mathlib\nimport Aesop\n\nset_option maxHeartbeats 400000\n\nopen BigOperators Real Nat Topology Rat\n\n"
    )
    problems = [Problem(f"p{i}", f"theorem p{i} (a b : ℝ) (h : a = b) : b = a := by\n", header) for i in range(3)]
    texts = [
        "  linarith -- double:accept\n```",
        "  linarith -- double:error\n```",
        "  simp\n",
        "  sorry\n```",
        "  nlinarith -- double:exit\n```",
    ]  # the last one crashes the REPL every time
    with served(config(workers=2, timeout=10)) as (url, _):
        with task.make_verifier(VerifierConfig(backend="http", url=url)) as verifier:
            assert isinstance(verifier, RemoteVerifier)
            summary = evaluate(
                task,
                ListSampler(texts),
                verifier,
                problems,
                samples=5,
                run_dir=tmp_path,
                progress=False,
                error_retries=0,
                bootstrap=100,
            )
    by_text = {}
    for line in (tmp_path / RESULTS_FILE).read_text().splitlines():
        r = json.loads(line)
        by_text.setdefault(r["completion"], set()).add((r["status"], r["verdict"]["check"]))
    assert by_text == {
        texts[0]: {("proved", "axioms")},
        texts[1]: {("rejected", "lean")},
        texts[2]: {("rejected", "extract")},
        texts[3]: {("rejected", "screen")},
        texts[4]: {("error", "infra")},
    }
    assert summary.errors == 3 and summary.pass_at_k[1].mean == pytest.approx(1 / 4)


def test_evaluate_cli_with_an_unreachable_service_fails_before_sampling(tmp_path, tiny_model_dir, monkeypatch, capsys):
    from prover.evaluate import main

    monkeypatch.setattr("prover.sampling.make_sampler", lambda config: pytest.fail("sampler built"))
    data = tmp_path / "problems.jsonl"
    data.write_text(
        json.dumps({"name": "p0", "formal_statement": "theorem p0 : 1 = 1 := by\n", "header": "import Mathlib\n"})
        + "\n"
    )
    argv = [
        "--model",
        str(tiny_model_dir),
        "--task.name",
        "lean",
        "--dataset",
        str(data),
        "--run_dir",
        str(tmp_path / "r"),
        "--verifier.backend",
        "http",
        "--verifier.url",
        f"http://127.0.0.1:9/{uuid.uuid4().hex}",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.splitlines()[-1]  # after the data loader's progress bar
    assert err.startswith("error: verifier:") and "cannot reach the verification service" in err
    assert not (tmp_path / "r").exists()


def test_verifier_settings_reach_the_factory_from_every_entry_point():
    from prover.config import load_config
    from prover.eval.config import EvalConfig
    from prover.search.config import SearchConfig
    from prover.train import TrainConfig

    for cls in (EvalConfig, SearchConfig, TrainConfig):
        loaded = load_config(cls, ["--verifier.backend", "http", "--verifier.url", "http://10.0.0.5:8000"])
        assert (loaded.verifier.backend, loaded.verifier.url) == ("http", "http://10.0.0.5:8000"), cls


def documented_snippet(name: str) -> str:
    """The python block under ``<!-- snippet: NAME ...-->`` in docs/service.md."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "service.md").read_text()
    after = text.split(f"<!-- snippet: {name} ")[1]
    return after.split("```python\n", 1)[1].split("```\n", 1)[0]


def test_the_documented_reward_functions_score_through_the_service(monkeypatch):
    statement = "theorem t (a b : ℝ) (h : a = b) : b = a := by\n"
    header = "import Mathlib\nimport Aesop\n"
    completions = ["  linarith\n```", "  linarith -- double:error\n```", "  linarith", "  linarith -- double:exit\n```"]
    with served(config(workers=2, timeout=5)) as (url, _):
        monkeypatch.setenv("PROVER_VERIFIER_URL", url)
        verl: dict = {}
        exec(documented_snippet("verl"), verl)
        scores = verl["compute_score"](
            data_sources=["lean"] * 4,
            solution_strs=completions,
            ground_truths=[statement] * 4,
            extra_infos=[{"header": header}] * 4,
        )
        assert scores == [1.0, 0.0, 0.0, 0.0]  # no closing fence: ran out of tokens; a crash scores 0 in veRL
        trl: dict = {}
        exec(documented_snippet("trl"), trl)
        with trl["verifier"]:
            rewards = trl["proof_reward"](
                prompts=["p"] * 4,
                completions=completions,
                name=["t"] * 4,
                statement=[statement] * 4,
                header=[header] * 4,
            )
    assert rewards == [1.0, 0.0, 0.0, None]  # TRL leaves a checker error out of the baseline
