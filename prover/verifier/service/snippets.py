"""A Kimina snippet (a whole Lean file) as the proof requests the verifier checks.

Kimina's clients send whole files: imports, options and opens, then declarations, with no trusted
statement. The layers that still apply are applied to all of it: the static screen over the whole
file (declarations allowed, everything else as strict as for a proof), Lean's verdict and the sorry
check over the whole body, and the axiom check of every declared theorem.

The verifier checks ``header + statement + proof`` and the axioms of the last theorem of the
statement, so a snippet declaring theorems ``t1 .. tn`` becomes n requests: request k is the body
up to the end of ``tk``'s proof, split after ``tk``'s ``:=``. The last request covers the whole body
(text after the last proof, such as ``end Foo``, is screened but not sent to Lean), and each
theorem's proof also passes the strict proof screen. Every position is a position in the snippet.
"""

from __future__ import annotations

from dataclasses import dataclass

from prover.verifier.screen import ALLOWED_OPTION_PREFIXES, ALLOWED_OPTIONS, SORRY_NAMES, Token, screen, tokenize
from prover.verifier.split import layout, split_header
from prover.verifier.verdict import ProofRequest, Status, Verdict

DECLARATIONS = frozenset({"theorem", "lemma"})
MODIFIERS = frozenset({"private", "protected", "noncomputable", "nonrec"})
# Commands a snippet may hold besides its theorems; the screen still rejects every other one
# (axiom, macro, notation, elab, initialize, attribute, #eval, ...).
OTHER_COMMANDS = frozenset(
    {
        "def",
        "abbrev",
        "example",
        "instance",
        "structure",
        "class",
        "inductive",
        "namespace",
        "section",
        "end",
        "variable",
        "universe",
        "universes",
        "mutual",
    }
)
ALLOWED_COMMANDS = DECLARATIONS | MODIFIERS | OTHER_COMMANDS | {"where", "deriving"}
_OPEN = "([{⟨⦃"
_CLOSE = ")]}⟩⦄"


@dataclass(frozen=True)
class Mark:
    """Where in the snippet (1-based line, 0-based column, as Lean counts) something was found."""

    line: int
    column: int
    length: int = 1


@dataclass(frozen=True)
class SnippetPlan:
    """What to check for one snippet: ``requests`` (one per theorem, the last covering the whole
    body), or ``verdict`` when the snippet was decided without Lean (``mark``: where, if anywhere)."""

    header: str
    theorems: tuple[str, ...] = ()
    requests: tuple[ProofRequest, ...] = ()
    places: tuple[Mark, ...] = ()  # where each theorem's name is
    verdict: Verdict | None = None
    mark: Mark | None = None


def imports_end(code: str) -> int:
    """Where the snippet's imports end: the header is the leading lines up to the last ``import``.

    Only imports go into the header (options and opens stay in the body, as Kimina splits), so
    snippets that differ in their options still share workers: the pool keeps one group per header.
    """
    header = split_header(code).header
    imports = [t for t in tokenize(header)[0] if _word(t) == "import"]
    if not imports:
        return 0
    newline = header.find("\n", imports[-1].pos)
    return len(header) if newline < 0 else newline + 1


def _mark(code: str, pos: int, length: int = 1) -> Mark:
    line_start = code.rfind("\n", 0, pos) + 1
    return Mark(code.count("\n", 0, pos) + 1, pos - line_start, length)


def _word(tok: Token) -> str | None:
    """A one-part identifier's normalised text (keywords are compared this way), else None."""
    return tok.parts[0] if tok.kind == "ident" and len(tok.parts) == 1 else None


def screen_snippet(code: str, header_end: int, *, allow_native: bool) -> tuple[str, Mark] | None:
    """None when the whole file passes, else (the reason, where).

    The proof screen runs on the file with the allowed command keywords blanked out: ``import`` in
    the header, declarations and their modifiers, ``open``, and ``set_option`` of an allowed option
    (in either form). Blanking keeps every other character in place, so the positions hold.
    """
    tokens, _ = tokenize(code)
    masked = list(code)
    for k, tok in enumerate(tokens):
        word = _word(tok)
        if word == "set_option":
            name = ".".join(tokens[k + 1].parts) if k + 1 < len(tokens) and tokens[k + 1].kind == "ident" else ""
            if name not in ALLOWED_OPTIONS and not name.startswith(ALLOWED_OPTION_PREFIXES):
                where = _mark(code, tok.pos, len(tok.text))
                return (
                    f"`set_option {name}` (only {sorted(ALLOWED_OPTIONS)} and pp.*/linter.* may be set) "
                    f"(line {where.line})",
                    where,
                )
        if word in ALLOWED_COMMANDS or word in ("open", "set_option") or (word == "import" and tok.pos < header_end):
            masked[tok.pos : tok.pos + len(tok.text)] = " " * len(tok.text)
    reason = screen("".join(masked), allow_native=allow_native)
    if reason is None:
        return None
    reason, _, line = reason.rpartition(" (proof line ")
    line = int(line.rstrip(")"))
    return f"{reason} (line {line})", _where_named(code, tokens, line, reason)


def _where_named(code: str, tokens: list[Token], line: int, reason: str) -> Mark:
    """Where, on or after ``line``, the first name quoted in ``reason`` (`sorry`, `native_decide`) is;
    the start of the line when the reason quotes none of the tokens (a literal, a comment)."""
    start = 0
    for _ in range(line - 1):
        start = code.index("\n", start) + 1
    quoted = set(reason.split("`")[1::2])
    hit = next((t for t in tokens if t.pos >= start and quoted & set(t.parts)), None)
    return _mark(code, hit.pos, len(hit.text)) if hit else Mark(line, 0)


def is_sorry_reason(reason: str) -> bool:
    """A screen rejection for ``sorry`` and its kin (which Kimina's clients count as sorry, not error)."""
    return reason.startswith("uses `") and reason.split("`")[1] in SORRY_NAMES


def _is_command_start(tokens: list[Token], k: int) -> bool:
    """Whether tokens[k] starts a new command (not a tactic-level ``open ... in`` / ``set_option ... in``)."""
    word = _word(tokens[k])
    if word in DECLARATIONS or word in MODIFIERS or word in OTHER_COMMANDS:
        return True
    if word == "set_option":
        return not (k + 3 < len(tokens) and _word(tokens[k + 3]) == "in")
    if word == "open":
        j = k + 1
        while j < len(tokens) and tokens[j].kind == "ident" and _word(tokens[j]) != "in":
            j += 1
        return not (j < len(tokens) and _word(tokens[j]) == "in")
    return False


def _command_begin(tokens: list[Token], k: int) -> int:
    """Back from the command at tokens[k] over ``set_option ... in`` / ``open ... in`` prefixes."""
    while k > 0 and _word(tokens[k - 1]) == "in":
        j = k - 2
        while j >= 0 and _word(tokens[j]) not in ("open", "set_option"):
            if tokens[j].kind != "ident" and tokens[j].kind != "number":
                return k
            j -= 1
        if j < 0:
            return k
        k = j
    return k


def _proof_start(tokens: list[Token], k: int) -> int | None:
    """Index in ``tokens`` of the ``:`` of the ``:=`` that ends the signature starting at tokens[k]."""
    depth = 0
    for j in range(k + 1, len(tokens)):
        text = tokens[j].text
        if tokens[j].kind == "symbol" and text in _OPEN:
            depth += 1
        elif tokens[j].kind == "symbol" and text in _CLOSE:
            depth = max(depth - 1, 0)
        elif (
            depth == 0
            and text == ":"
            and j + 1 < len(tokens)
            and tokens[j + 1].text == "="
            and tokens[j + 1].pos == tokens[j].pos + 1
        ):
            return j
        elif depth == 0 and _is_command_start(tokens, j):
            return None
    return None


def _before_doc_comment(code: str, start: int, stop: int) -> int:
    """Where the comments and blanks in ``code[start:stop]`` (between a proof and the next command)
    stop belonging to the proof: at the next declaration's doc comment ``/--``, else at ``stop``."""
    i, depth = start, 0
    while i < stop:
        if depth == 0 and code.startswith("--", i):
            newline = code.find("\n", i)
            i = stop if newline < 0 else newline + 1
        elif code.startswith("/-", i):
            if depth == 0 and code.startswith("/--", i):
                return i
            depth, i = depth + 1, i + 2
        elif depth and code.startswith("-/", i):
            depth, i = depth - 1, i + 2
        else:
            i += 1
    return stop


def plan_snippet(code: str, *, allow_native: bool = False, max_theorems: int = 8) -> SnippetPlan:
    """The requests that check ``code``, or the verdict reached without Lean."""
    hb = imports_end(code)
    header = code[:hb]
    rejected = screen_snippet(code, hb, allow_native=allow_native)
    if rejected is not None:
        reason, mark = rejected
        return SnippetPlan(header, verdict=Verdict(Status.REJECTED, f"screen: {reason}", "screen"), mark=mark)
    tokens = [t for t in tokenize(code)[0] if t.pos >= hb]
    starts = [k for k, t in enumerate(tokens) if _word(t) in DECLARATIONS]
    if not starts:
        return SnippetPlan(
            header,
            verdict=Verdict(
                Status.ERROR,
                "statement: the snippet declares no `theorem` or `lemma` (the service checks proofs; "
                "it does not run other commands)",
                "statement",
            ),
        )
    if len(starts) > max_theorems:
        return SnippetPlan(
            header,
            verdict=Verdict(
                Status.ERROR,
                f"snippet: {len(starts)} theorems; the service checks at most {max_theorems} per snippet "
                f"(service.max_theorems)",
                "snippet",
            ),
        )
    names, requests, places = [], [], []
    for k in starts:
        name = tokens[k + 1].text if k + 1 < len(tokens) and tokens[k + 1].kind == "ident" else None
        colon = _proof_start(tokens, k + 1) if name else None
        if colon is None:
            where = _mark(code, tokens[k].pos, len(tokens[k].text))
            return SnippetPlan(
                header,
                verdict=Verdict(
                    Status.ERROR,
                    f"snippet: cannot find the name and the `:=` of the {tokens[k].text} on line "
                    f"{where.line}; the service checks `theorem NAME ... := proof` declarations",
                    "snippet",
                ),
                mark=where,
            )
        nxt = next((j for j in range(colon + 2, len(tokens)) if _is_command_start(tokens, j)), len(tokens))
        split_at = tokens[colon].pos + 2
        end = len(code)
        if nxt < len(tokens):
            begin = _command_begin(tokens, nxt)
            last = tokens[begin - 1]
            end = max(split_at, _before_doc_comment(code, last.pos + len(last.text), tokens[begin].pos))
        names.append(name)
        places.append(_mark(code, tokens[k + 1].pos, len(name)))
        requests.append(ProofRequest(statement=code[hb:split_at], proof=code[split_at:end], header=header, name=name))
    return SnippetPlan(header, tuple(names), tuple(requests), tuple(places))


def snippet_positions(request: ProofRequest, messages: list[dict]) -> list[dict]:
    """``messages`` (positions in the checked text) with positions in the snippet.

    The two differ only where the verifier put a newline between statement and proof (``:=by``):
    the proof's first line moves back to the end of the statement's last line.
    """
    lay = layout(request.header, request.statement, request.proof)
    if lay.command == request.statement + request.proof:
        return messages
    joint = lay.proof_line - 1  # the statement's last line
    column = len(request.statement) - (request.statement.rfind("\n") + 1)

    def back(pos):
        if not (isinstance(pos, dict) and isinstance(pos.get("line"), int) and pos["line"] > joint):
            return pos
        if pos["line"] == joint + 1:
            return {**pos, "line": joint, "column": pos.get("column", 0) + column}
        return {**pos, "line": pos["line"] - 1}

    return [
        {**m, "pos": back(m.get("pos")), **({"endPos": back(m["endPos"])} if m.get("endPos") else {})} for m in messages
    ]
