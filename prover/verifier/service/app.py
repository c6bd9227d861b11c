"""The HTTP application: Kimina's endpoints, our own ``/v1/verify``, health, metrics.

Built on FastAPI (pydantic models, request validation with located errors, the OpenAPI schema for
free) served by uvicorn: the stack Kimina's own server uses, so its clients meet the same HTTP
behaviour, and already in this project's environment through vLLM.

Before a route sees a request, ``Gate`` checks the API key (401) and the body size (413, from
``Content-Length`` or while reading), so a caller without the key learns nothing else and an
oversized body is never held in memory. Routes then check the batch limits (413), validate (422),
and admit the proofs into the bounded queue (503 + Retry-After when full or shutting down).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import time
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse

from prover.verifier.base import Verifier
from prover.verifier.config import VerifierConfig
from prover.verifier.service.config import API_KEY_ENV, ServiceConfig
from prover.verifier.service.kimina import CheckRequest, VerifyRequestBody, VerifyV1Request, check_result, verify_result
from prover.verifier.service.metrics import Metrics
from prover.verifier.service.runner import Refused, Runner
from prover.verifier.service.snippets import SnippetPlan, plan_snippet
from prover.verifier.verdict import ProofRequest, Verdict

logger = logging.getLogger(__name__)

OPEN_PATHS = frozenset({"/health", "/health/", "/"})  # answered without the key (load balancers, kimina health())
ENDPOINTS = frozenset(
    {"/api/check", "/verify", "/one_pass_verify_batch", "/v1/verify", "/health", "/", "/metrics", "/stats"}
)


async def _reply(send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ] + [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Gate:
    """ASGI middleware: API key, body size, and the request count and latency of every answer."""

    def __init__(self, app, *, api_key: str | None, max_body_bytes: int, metrics: Metrics):
        self.app = app
        self.api_key = api_key
        self.max_body = max_body_bytes
        self.metrics = metrics

    def _authorized(self, scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = value.decode("latin-1").removeprefix("Bearer ").strip()  # as Kimina's server reads it
                return hmac.compare_digest(token.encode(), self.api_key.encode())
        return False

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.monotonic(), [0]
        path = scope["path"]
        endpoint = path.rstrip("/") or "/"

        async def send_and_count(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            if self.api_key and path not in OPEN_PATHS and not self._authorized(scope):
                await _reply(
                    send_and_count,
                    401,
                    "missing or wrong API key: send `Authorization: Bearer KEY`",
                    {"www-authenticate": "Bearer"},
                )
                return
            declared = dict(scope["headers"]).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                await _reply(
                    send_and_count,
                    413,
                    f"request body of {int(declared)} bytes; the limit is {self.max_body} (service.max_body_mb)",
                )
                return
            body = bytearray()
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    self.metrics.disconnect()
                    logger.info("%s: the caller left while sending its request", path)
                    return
                body += message.get("body", b"")
                if len(body) > self.max_body:
                    await _reply(send_and_count, 413, f"request body over {self.max_body} bytes (service.max_body_mb)")
                    return
                if not message.get("more_body"):
                    break
            replayed = False

            async def replay():
                nonlocal replayed
                if replayed:
                    return await receive()  # later reads see the caller's disconnect
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}

            await self.app(scope, replay, send_and_count)
        except Exception:
            status[0] = status[0] or 500  # answered by the server-error handler outside this middleware
            raise
        finally:
            label = endpoint if endpoint in ENDPOINTS else "other"
            self.metrics.request(label, status[0] or 499, time.monotonic() - start)  # 499: no answer sent


def create_app(
    verifier: Verifier, service: ServiceConfig | None = None, verifier_config: VerifierConfig | None = None
) -> FastAPI:
    """The service in front of ``verifier`` (which the caller owns and closes)."""
    service = service or ServiceConfig()
    verifier_config = verifier_config or VerifierConfig()
    metrics = Metrics()
    runner = Runner(verifier, service.max_queue, service.shutdown_grace, metrics)
    app = FastAPI(title="prover verification service", version="1", docs_url=None, redoc_url=None)
    app.state.runner, app.state.metrics = runner, metrics
    api_key = service.api_key or os.environ.get(API_KEY_ENV) or None
    app.add_middleware(Gate, api_key=api_key, max_body_bytes=service.max_body_mb << 20, metrics=metrics)
    busy_headers = {"Retry-After": str(service.retry_after)}

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # The errors without their "input": a rejected body can be megabytes of Lean.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Refused)
    async def refused(_: Request, exc: Refused) -> JSONResponse:
        return JSONResponse({"detail": exc.reason}, status_code=503, headers=busy_headers)

    def check_limits(items: list[tuple[str, str]]) -> None:
        if len(items) > service.max_batch:
            raise HTTPException(
                413,
                f"{len(items)} items in one request; the limit is {service.max_batch} "
                f"(service.max_batch): send smaller batches",
            )
        for name, text in items:
            size = len(text.encode())
            if size > service.max_snippet_bytes:
                raise HTTPException(
                    413, f"{name} is {size} bytes; the limit is {service.max_snippet_bytes} (service.max_snippet_bytes)"
                )

    def plans_of(codes: list[str]) -> list[SnippetPlan]:
        return [
            plan_snippet(c, allow_native=verifier_config.allow_native, max_theorems=service.max_theorems) for c in codes
        ]

    async def run_plans(plans: list[SnippetPlan]) -> list[list[Verdict]]:
        requests = [r for p in plans for r in p.requests]
        runner.admit(len(requests))
        verdicts = iter(await runner.run(requests))
        return [[next(verdicts) for _ in p.requests] for p in plans]

    async def answer(request: Request, content: dict[str, Any]) -> JSONResponse:
        if await request.is_disconnected():
            metrics.disconnect()
            logger.info("%s: the caller left before its answer (its verdicts are cached)", request.url.path)
        return JSONResponse(content)

    @app.post("/api/check")
    @app.post("/api/check/", include_in_schema=False)
    async def api_check(body: CheckRequest, request: Request) -> JSONResponse:
        """Kimina's check: whole-file snippets in, REPL-shaped results (plus our verdicts) out."""
        check_limits([(f"snippet {s.id!r}", s.code) for s in body.snippets])
        if body.infotree is not None:
            raise HTTPException(422, "infotree is not supported: this service answers verdicts and Lean's messages")
        plans = await asyncio.to_thread(plans_of, [s.code for s in body.snippets])
        verdicts = await run_plans(plans)
        return await answer(
            request, {"results": [check_result(s.id, p, v) for s, p, v in zip(body.snippets, plans, verdicts)]}
        )

    @app.post("/verify")
    @app.post("/one_pass_verify_batch")
    async def verify(body: VerifyRequestBody, request: Request) -> JSONResponse:
        """Kimina's older endpoint: ``codes`` with ``custom_id`` and ``proof`` (or ``code``)."""
        codes = [(str(c.custom_id), c.proof if c.proof is not None else c.code) for c in body.codes]
        check_limits([(f"code {cid!r}", text) for cid, text in codes])
        if body.infotree_type is not None:
            raise HTTPException(
                422, "infotree_type is not supported: this service answers verdicts and Lean's messages"
            )
        plans = await asyncio.to_thread(plans_of, [text for _, text in codes])
        verdicts = await run_plans(plans)
        return await answer(
            request, {"results": [verify_result(cid, p, v) for (cid, _), p, v in zip(codes, plans, verdicts)]}
        )

    @app.post("/v1/verify")
    async def verify_v1(body: VerifyV1Request, request: Request) -> JSONResponse:
        """Trusted header and statement, proof from the model: one ``Verdict`` per request, in order."""
        check_limits([(f"request {i}", r.header + r.statement + r.proof) for i, r in enumerate(body.requests)])
        requests = [
            ProofRequest(statement=r.statement, proof=r.proof, header=r.header, name=r.name) for r in body.requests
        ]
        runner.admit(len(requests))
        verdicts = await runner.run(requests)
        return await answer(request, {"verdicts": [v.to_json() for v in verdicts]})

    @app.get("/health")
    @app.get("/health/", include_in_schema=False)
    @app.get("/", include_in_schema=False)
    async def health() -> JSONResponse:
        if runner.draining:
            return JSONResponse({"status": "shutting down"}, status_code=503, headers=busy_headers)
        return JSONResponse(
            {
                "status": "ok",
                "backend": verifier_config.backend,
                "timeout": verifier_config.timeout,
                "queue": {"depth": runner.depth, "limit": service.max_queue},
                "limits": {
                    "max_batch": service.max_batch,
                    "max_snippet_bytes": service.max_snippet_bytes,
                    "max_body_mb": service.max_body_mb,
                    "max_theorems": service.max_theorems,
                },
            }
        )

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        return PlainTextResponse(metrics.prometheus(), media_type="text/plain; version=0.0.4")

    @app.get("/stats")
    async def stats() -> JSONResponse:
        return JSONResponse(metrics.snapshot())

    return app
