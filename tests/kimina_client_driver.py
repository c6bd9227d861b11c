"""Drive a verification service with the real kimina-client (run by tests/test_service_kimina.py in a
Python >= 3.12 environment that has kimina-client installed; this project is not importable there).

Reads a JSON job from stdin: ``{"url", "api_key", "snippets": [{"id", "code"}], "batch_size",
"max_workers", "timeout", "n_retries"}``, and writes a JSON report to stdout: the client's version,
``health()``, and for the sync and the async client the results of ``check()`` as the client parsed
them (id, ``analyze()`` status, error, response); then ``CheckResponse.analyze()`` (its summary table
goes to the client's logger, which is sent to stderr here); and the older ``/verify`` endpoint read
through the package's ``VerifyResponse`` model and ``proof_utils.analyze_sample`` (or its HTTP status).
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import logging
import sys
import time

import httpx
from kimina_client import AsyncKiminaClient, CheckResponse, KiminaClient, Snippet, VerifyResponse
from kimina_client.proof_utils import analyze_sample


def parsed(response: CheckResponse) -> list[dict]:
    return [
        {"id": r.id, "status": r.analyze().status.value, "error": r.error, "response": r.response}
        for r in response.results
    ]


async def async_check(job: dict, snippets: list[Snippet]) -> CheckResponse:
    client = AsyncKiminaClient(api_url=job["url"], api_key=job["api_key"], n_retries=job["n_retries"])
    try:
        return await client.check(
            snippets,
            timeout=job["timeout"],
            batch_size=job["batch_size"],
            max_workers=job["max_workers"],
            show_progress=False,
        )
    finally:
        await client.close()


def main() -> None:
    for handler in logging.getLogger("kimina-client").handlers:  # its tables and retries: not our stdout
        handler.setStream(sys.stderr)
    job = json.load(sys.stdin)
    snippets = [Snippet(id=s["id"], code=s["code"]) for s in job["snippets"]]
    client = KiminaClient(api_url=job["url"], api_key=job["api_key"], n_retries=job["n_retries"])
    report = {
        "version": importlib.metadata.version("kimina-client"),
        "python": sys.version.split()[0],
        "health": client.health(),
    }
    start = time.monotonic()
    response = client.check(
        snippets,
        timeout=job["timeout"],
        batch_size=job["batch_size"],
        max_workers=job["max_workers"],
        show_progress=False,
    )
    response.analyze(time.monotonic() - start)  # the client's own summary must read our answers
    report["sync"] = parsed(response)
    report["async"] = parsed(asyncio.run(async_check(job, snippets)))
    codes = [{"custom_id": s.id, "proof": s.code} for s in snippets[: job["batch_size"]]]
    raw = httpx.post(
        job["url"] + "/verify",
        json={"codes": codes, "timeout": job["timeout"]},
        headers={"Authorization": f"Bearer {job['api_key']}"} if job["api_key"] else {},
        timeout=600,
    )
    report["verify"] = (
        raw.status_code
        if raw.status_code != 200
        else [
            {"custom_id": r["custom_id"], **vars(analyze_sample(r))}
            for r in VerifyResponse.model_validate(raw.json()).results
        ]
    )
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
