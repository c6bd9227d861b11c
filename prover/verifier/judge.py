"""Pure functions that turn REPL answers into verdicts: soundness layers 2 (Lean's own verdict),
3 (the axioms the theorem depends on) and 4 (the theorem's name comes from the trusted statement)."""

from __future__ import annotations

import re
from typing import Any

from prover.verifier.split import Layout
from prover.verifier.verdict import Status, Verdict

MAX_MESSAGES = 50  # kept per verdict; verdicts go into caches and JSONL files
MAX_MESSAGE_CHARS = 4000  # a message longer than this keeps its head only

# "declaration uses 'sorry'" before Lean v4.28, "declaration uses `sorry`" from v4.28 on.
SORRY_WARNING = re.compile(r"declaration uses ['`]sorry['`]")
_DEPENDS = re.compile(r"depends on axioms:\s*\[(.*?)\]", re.S)
_NO_AXIOMS = "does not depend on any axioms"
_DECL = re.compile(r"(?:^|[\s\]])(?:theorem|lemma)\s+(«[^»]+»|[^\s:({\[⦃]+)")
_COMMENT_TOKEN = re.compile(r"--|/-|-/")


def strip_comments(text: str) -> str:
    """``text`` with ``--`` and nested ``/- -/`` comments replaced by spaces (for the trusted statement)."""
    out, depth, i = [], 0, 0
    for m in _COMMENT_TOKEN.finditer(text):
        if m.start() < i:
            continue
        tok = m.group()
        if depth == 0:
            if tok == "--":
                out.append(text[i:m.start()])
                nl = text.find("\n", m.end())
                i = len(text) if nl < 0 else nl
            elif tok == "/-":
                out.append(text[i:m.start()])
                depth, i = 1, m.end()
        elif tok in ("/-", "-/"):
            depth += 1 if tok == "/-" else -1
            i = m.end()
    if depth == 0:
        out.append(text[i:])
    return " ".join(out)


def theorem_name(statement: str) -> str | None:
    """The name the proof completes: the last ``theorem``/``lemma`` the trusted statement declares
    (an earlier one is a finished auxiliary declaration); None when there is none."""
    found = _DECL.findall(strip_comments(statement))
    return found[-1] if found else None


def clean_messages(messages: Any, layout: Layout | None = None) -> list[dict[str, Any]]:
    """Lean's messages with positions relative to the whole checked text and long data cut."""
    if not isinstance(messages, list):
        return []
    out = []
    for msg in messages[:MAX_MESSAGES]:
        if not isinstance(msg, dict):
            continue
        msg = dict(msg)
        data = msg.get("data")
        if isinstance(data, str) and len(data) > MAX_MESSAGE_CHARS:
            msg["data"] = data[:MAX_MESSAGE_CHARS] + f"... [{len(data) - MAX_MESSAGE_CHARS} more characters]"
        if layout is not None:
            msg["pos"] = layout.shift_position(msg.get("pos"))
            if msg.get("endPos") is not None:
                msg["endPos"] = layout.shift_position(msg["endPos"])
        out.append(msg)
    return out


def _first_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + "..."


def judge_command(response: dict[str, Any], layout: Layout | None = None) -> Verdict | None:
    """Layer 2: a rejection when Lean reported an error, a sorry, or the sorry warning; else None.

    Every message counts (not only those kept in the verdict); the line named in the reason is
    relative to the whole checked text when ``layout`` is given.
    """
    messages = response.get("messages") or []
    errors = [m for m in messages if isinstance(m, dict) and m.get("severity") == "error"]
    if errors:
        pos = errors[0].get("pos") or {}
        pos = layout.shift_position(pos) if layout is not None else pos
        where = f" at line {pos.get('line')}" if isinstance(pos, dict) and "line" in pos else ""
        return Verdict(Status.REJECTED, f"lean: error{where}: {_first_line(errors[0].get('data', ''))}", "lean")
    if response.get("sorries"):
        return Verdict(Status.REJECTED, "sorry: the proof leaves goals to `sorry`", "sorry")
    for m in messages:
        if isinstance(m, dict) and SORRY_WARNING.search(str(m.get("data", ""))):
            return Verdict(Status.REJECTED, "sorry: Lean warns that the declaration uses sorry", "sorry")
    return None


def parse_axioms(response: dict[str, Any]) -> list[str] | None:
    """The axioms listed by a ``#print axioms`` answer; None when the answer holds no such list."""
    for m in response.get("messages") or []:
        data = str(m.get("data", "")) if isinstance(m, dict) else ""
        if m.get("severity") == "error":
            return None
        found = _DEPENDS.search(data)
        if found:
            names = [n.strip().strip("`'").removeprefix("«").removesuffix("»") for n in found.group(1).split(",")]
            return [n for n in names if n]
        if _NO_AXIOMS in data:
            return []
    return None


def judge_axioms(response: dict[str, Any], allowlist: set[str]) -> Verdict:
    """Layer 3: proved only when ``#print axioms`` lists nothing outside ``allowlist``."""
    axioms = parse_axioms(response)
    if axioms is None:
        detail = _first_line(" | ".join(str(m.get("data", "")) for m in response.get("messages") or []
                                        if isinstance(m, dict))) or "no answer"
        return Verdict(Status.REJECTED, f"axioms: could not read the theorem's axioms ({detail})", "axioms")
    extra = sorted(set(axioms) - allowlist)
    if extra:
        what = "uses sorry (sorryAx)" if "sorryAx" in extra else "depends on axioms outside the allowlist"
        return Verdict(Status.REJECTED, f"axioms: {what}: {', '.join(extra)}", "axioms")
    return Verdict(Status.PROVED, "proved", "axioms")
