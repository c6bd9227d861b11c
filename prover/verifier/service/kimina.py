"""Kimina Lean Server's wire format, and our verdicts written in it.

Requests follow kimina-client 0.2.1 (``kimina_client/models.py``: ``CheckRequest``, ``Snippet``,
``VerifyRequestBody``, ``Code``); answers follow what Kimina's server sends
(``server/routers/check.py``, ``backward.py`` at project-numina/kimina-lean-server fb2393d):
``{"id", "time", "error" | "response"}`` with ``response`` in the REPL's shape. ``env`` is left out:
a worker's environment numbers mean nothing to a caller, and Kimina's server, which sends its
commands with ``gc``, usually has none either.

Each answer is written so that kimina-client's ``ReplResponse.analyze()`` reaches the status our
verdict implies, even where Lean alone would have said "valid" (a screened cheat, a foreign axiom,
a hidden sorry), and carries our verdict in a ``verdict`` field the client ignores:

==========================  =======================================================  ==============
verdict                     what is sent                                             analyze()
==========================  =======================================================  ==============
proved                      Lean's messages (no error, no sorries)                   valid
rejected: sorry, a screened  Lean's messages and a ``sorries`` entry at the sorry     sorry
``sorry``, ``sorryAx``      (plus the "declaration uses 'sorry'" warning)
rejected: anything else     Lean's messages, plus an error message naming the layer  lean_error
timeout                     ``error``: "Lean REPL command timed out (...)"           timeout_error
error                       ``error``: the verifier's reason                         server_error
==========================  =======================================================  ==============
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from prover.verifier.judge import SORRY_WARNING
from prover.verifier.service.snippets import Mark, SnippetPlan, is_sorry_reason, snippet_positions
from prover.verifier.verdict import Status, Verdict

# Order of precedence when a snippet's theorems end differently: a definite rejection decides,
# then a timeout (a verdict), then an error (no verdict).
_PRECEDENCE = (Status.REJECTED, Status.TIMEOUT, Status.ERROR)


class Snippet(BaseModel):
    id: str
    code: str


class CheckRequest(BaseModel):
    """``POST /api/check``, as kimina-client's ``CheckRequest.model_dump()`` sends it."""

    snippets: list[Snippet]
    timeout: int = Field(30, ge=0)  # accepted; the pool's own ``verifier.timeout`` applies (docs/service.md)
    debug: bool = False
    reuse: bool = True
    infotree: str | None = None

    @model_validator(mode="after")
    def _ids(self) -> CheckRequest:
        if not self.snippets:
            raise ValueError("`snippets` must be non empty")
        if len({s.id for s in self.snippets}) != len(self.snippets):
            raise ValueError("`snippets` must have unique ids")
        return self


class Code(BaseModel):
    custom_id: str | int
    proof: str | None = None
    code: str | None = None  # the older autoformalizer clients' name for it

    @model_validator(mode="after")
    def _content(self) -> Code:
        if self.proof is None and self.code is None:
            raise ValueError(f"code {self.custom_id!r} has neither `proof` nor `code`")
        return self


class VerifyRequestBody(BaseModel):
    """``POST /verify`` (Kimina's backward-compatible endpoint)."""

    codes: list[Code]
    timeout: int = 300
    infotree_type: str | None = None
    disable_cache: bool = False


class ProofIn(BaseModel):
    """One ``ProofRequest`` of ``POST /v1/verify``: header and statement trusted, proof from the model."""

    model_config = ConfigDict(extra="forbid")

    statement: str
    proof: str
    header: str = ""
    name: str = ""


class VerifyV1Request(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: list[ProofIn]


def snippet_verdict(plan: SnippetPlan, verdicts: list[Verdict]) -> tuple[Verdict, int]:
    """The snippet's verdict from its theorems' ones, and which theorem it came from (-1: none ran).

    Proved only when every theorem is; else the first rejection (the whole-body check first,
    whose messages cover everything), then a timeout, then an error.
    """
    if plan.verdict is not None:
        return plan.verdict, -1
    order = [len(verdicts) - 1] + list(range(len(verdicts) - 1))
    for status in _PRECEDENCE:
        for k in order:
            if verdicts[k].status is status:
                return verdicts[k], k
    return verdicts[-1], len(verdicts) - 1


def _span(mark: Mark | None) -> dict[str, Any]:
    mark = mark or Mark(1, 0)
    return {
        "pos": {"line": mark.line, "column": mark.column},
        "endPos": {"line": mark.line, "column": mark.column + mark.length},
    }


def _is_sorry(verdict: Verdict) -> bool:
    if verdict.check == "sorry":
        return True
    if verdict.check == "screen":
        return is_sorry_reason(verdict.reason.removeprefix("screen: "))
    return verdict.check == "axioms" and "sorryAx" in verdict.reason


def _response(plan: SnippetPlan, verdict: Verdict, k: int, verdicts: list[Verdict]) -> dict[str, Any]:
    """The REPL-shaped ``response`` for a proved or rejected snippet."""
    messages: list[dict[str, Any]] = []
    if plan.requests:  # Lean's messages over the whole body
        messages = snippet_positions(plan.requests[-1], verdicts[-1].messages)
    where = plan.mark if k < 0 else plan.places[k]
    sorries: list[dict[str, Any]] = []
    if verdict.status is Status.REJECTED:
        if _is_sorry(verdict):
            warning = next((m for m in messages if SORRY_WARNING.search(str(m.get("data", "")))), None)
            span = (
                {"pos": warning["pos"], "endPos": warning.get("endPos") or warning["pos"]} if warning else _span(where)
            )
            sorries = [{**span, "goal": f"(goal not kept by the verifier: {verdict.reason})"}]
            if warning is None:
                messages.append({"severity": "warning", **span, "data": "declaration uses 'sorry'"})
        elif verdict.check != "lean" or not any(m.get("severity") == "error" for m in messages):
            # Lean accepted it or never saw it (screen, axioms), or its error is past the kept messages
            messages.append({"severity": "error", **_span(where), "data": f"prover verifier: {verdict.reason}"})
    response: dict[str, Any] = {}
    if messages:
        response["messages"] = messages
    if sorries:
        response["sorries"] = sorries
    return response


def _verdict_field(plan: SnippetPlan, verdict: Verdict) -> dict[str, Any]:
    return {
        "status": verdict.status.value,
        "check": verdict.check,
        "reason": verdict.reason,
        "cached": verdict.cached,
        "theorems": list(plan.theorems),
    }


def check_result(snippet_id: str, plan: SnippetPlan, verdicts: list[Verdict]) -> dict[str, Any]:
    """One entry of ``/api/check``'s ``results``."""
    verdict, k = snippet_verdict(plan, verdicts)
    out: dict[str, Any] = {"id": snippet_id, "time": round(max((v.time for v in verdicts), default=0.0), 6)}
    if verdict.status is Status.TIMEOUT:
        out["error"] = f"Lean REPL command timed out ({verdict.reason})"  # analyze() looks for "timed out"
    elif verdict.status is Status.ERROR:
        out["error"] = verdict.reason.replace("timed out", "time limit")  # never mistaken for a timeout
    else:
        out["response"] = _response(plan, verdict, k, verdicts)
    out["verdict"] = _verdict_field(plan, verdict)
    return out


def verify_result(custom_id: str, plan: SnippetPlan, verdicts: list[Verdict]) -> dict[str, Any]:
    """One entry of ``/verify``'s ``results``: ``custom_id``, and the response with its ``time`` inside."""
    result = check_result(custom_id, plan, verdicts)
    out = {"custom_id": custom_id, "verdict": result["verdict"]}
    if "error" in result:
        out["error"] = result["error"]
    else:
        out["response"] = {**result["response"], "time": result["time"]}
    return out
