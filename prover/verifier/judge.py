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
# One line of `#print axioms` (Lean's printAxiomsOf, src/Lean/Elab/Print.lean, worded the same at
# v4.9.0 and on main): the constant's name in apostrophes, then its sorted axioms, wrapped past 120
# columns ("[propext,\n Classical.choice,\n Quot.sound]"), or "does not depend on any axioms".
_AXIOMS_LINE = re.compile(
    r"'(?P<name>.+)' (?:depends on axioms:\s*\[(?P<axioms>[^\]]*)\]"
    r"|(?P<none>does not depend on any axioms))",
    re.S,
)
ROOT = "_root_."
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
                out.append(text[i : m.start()])
                nl = text.find("\n", m.end())
                i = len(text) if nl < 0 else nl
            elif tok == "/-":
                out.append(text[i : m.start()])
                depth, i = 1, m.end()
        elif tok in ("/-", "-/"):
            depth += 1 if tok == "/-" else -1
            i = m.end()
    if depth == 0:
        out.append(text[i:])
    return " ".join(out)


def theorem_name(statement: str) -> str | None:
    """The name the proof completes, anchored at the root namespace (``_root_.foo``): the last
    ``theorem``/``lemma`` the trusted statement declares (an earlier one is a finished auxiliary
    declaration); None when it declares none.

    ``#print axioms foo`` prints one line for every constant ``foo`` resolves to, and under the
    default ``open ... Nat ...`` that includes ``Nat.foo`` when it exists (listed first); asking for
    ``_root_.foo`` names the theorem alone.
    """
    found = _DECL.findall(strip_comments(statement))
    if not found:
        return None
    name = found[-1]
    return name if name.startswith(ROOT) else ROOT + name


def axioms_command(name: str) -> str:
    """The request text that lists the axioms of the theorem ``name`` (as ``theorem_name`` gives it)."""
    return f"#print axioms {name}"


def _plain(name: str) -> str:
    """A name as ``#print axioms`` quotes it: no ``_root_.`` prefix, no guillemets."""
    return name.removeprefix(ROOT).replace("«", "").replace("»", "")


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


def axiom_lines(response: dict[str, Any]) -> list[tuple[str, list[str]]] | None:
    """Every ``#print axioms`` line of an answer as (constant, axioms); None when the answer holds an error."""
    lines = []
    for m in response.get("messages") or []:
        if not isinstance(m, dict):
            continue
        if m.get("severity") == "error":
            return None
        for found in _AXIOMS_LINE.finditer(str(m.get("data", ""))):
            names = [] if found.group("none") else [_plain(n.strip()) for n in found.group("axioms").split(",")]
            lines.append((_plain(found.group("name")), [n for n in names if n]))
    return lines


def parse_axioms(response: dict[str, Any], theorem: str | None = None) -> list[str] | None:
    """The axioms ``#print axioms`` lists for ``theorem``: the union of every line that names it (every
    line, when no name is given); None when the answer holds an error or no such line."""
    lines = axiom_lines(response)
    if lines is None:
        return None
    if theorem is not None:
        lines = [(name, axioms) for name, axioms in lines if name == _plain(theorem)]
    if not lines:
        return None
    return list(dict.fromkeys(a for _, axioms in lines for a in axioms))  # in Lean's order, once each


def judge_axioms(response: dict[str, Any], allowlist: set[str], theorem: str | None = None) -> Verdict:
    """Layer 3: proved only when ``#print axioms`` lists nothing outside ``allowlist`` for the theorem.

    Every line is read. With ``theorem``, the lines that name it count and an answer without one is a
    rejection; without it (the request named ``_root_.NAME``, which resolves to one constant), every
    line counts, so a line about another constant can only make the verdict stricter.
    """
    axioms = parse_axioms(response, theorem)
    if axioms is None:
        detail = (
            _first_line(
                " | ".join(str(m.get("data", "")) for m in response.get("messages") or [] if isinstance(m, dict))
            )
            or "no answer"
        )
        target = f"`{_plain(theorem)}`" if theorem else "the theorem"
        return Verdict(Status.REJECTED, f"axioms: no `#print axioms` line for {target} ({detail})", "axioms")
    extra = sorted(set(axioms) - allowlist)
    if extra:
        what = "uses sorry (sorryAx)" if "sorryAx" in extra else "depends on axioms outside the allowlist"
        return Verdict(Status.REJECTED, f"axioms: {what}: {', '.join(extra)}", "axioms")
    return Verdict(Status.PROVED, "proved", "axioms")
