"""Pure text functions: cut a Lean snippet into header and body, and lay out the text that is checked.

The checked text is ``header + statement + proof`` as one file. The header is sent to a worker once
(it holds the imports, which the REPL allows only in a fresh environment); each proof is then sent as
``statement + proof`` on top of it. Lean reports positions relative to that command; ``Layout``
shifts them so that they are relative to the whole checked text (what users and the search see),
and maps them back into the proof.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEADER_LINE = re.compile(r"(import|set_option|open)\s")


@dataclass(frozen=True)
class Split:
    header: str  # the leading imports, options, opens, comments and blank lines
    body: str  # everything from the first other line on
    header_lines: int  # lines in ``header``: the body starts on line header_lines + 1


def split_header(code: str) -> Split:
    """Split ``code`` after its leading ``import`` / ``set_option`` / ``open`` / comment / blank lines.

    A ``set_option ... in`` or ``open ... in`` line belongs to the declaration that follows it, and
    a doc comment (``/--``) to its declaration: both start the body.
    """
    lines = code.splitlines(keepends=True)
    i, in_comment = 0, False
    while i < len(lines):
        stripped = lines[i].strip()
        if in_comment:
            in_comment = "-/" not in stripped
        elif not stripped or stripped.startswith("--"):
            pass
        elif stripped.startswith("/-") and not stripped.startswith("/--"):
            in_comment = "-/" not in stripped[2:]
        elif _HEADER_LINE.match(stripped) and not re.search(r"\sin\s*$", stripped):
            pass
        else:
            break
        i += 1
    header = "".join(lines[:i])
    return Split(header=header, body=code[len(header) :], header_lines=header.count("\n"))


@dataclass(frozen=True)
class Layout:
    """Where header, statement and proof sit in the checked text."""

    header: str  # as sent to the worker (ends with a newline unless empty)
    command: str  # statement + proof: what each check sends on top of the header
    header_lines: int  # lines before the statement
    proof_offset: int  # index of the proof's first character in ``command``
    proof_line: int  # 1-based line of the whole text where the proof starts
    proof_column: int  # 0-based column of that line where the proof starts

    @property
    def text(self) -> str:
        """The checked text as one file."""
        return self.header + self.command

    def shift_position(self, pos: dict | None) -> dict | None:
        """A REPL ``pos`` (relative to the command) made relative to the whole text."""
        if not isinstance(pos, dict) or "line" not in pos:
            return pos
        return {**pos, "line": pos["line"] + self.header_lines}

    def proof_position(self, line: int, column: int) -> tuple[int, int] | None:
        """A whole-text position as (line, column) inside the proof (1-based line), or None before it."""
        if (line, column) < (self.proof_line, self.proof_column):
            return None
        if line == self.proof_line:
            return 1, column - self.proof_column
        return line - self.proof_line + 1, column


def layout(header: str, statement: str, proof: str) -> Layout:
    """Lay out ``header + statement + proof``.

    A newline is added after a header that lacks one, and between statement and proof when neither
    side has whitespace there (``... := by`` + ``simp`` would otherwise read ``bysimp``).
    """
    if header and not header.endswith("\n"):
        header += "\n"
    sep = "\n" if statement and proof and not statement[-1].isspace() and not proof[0].isspace() else ""
    head = statement + sep
    header_lines = header.count("\n")
    last_newline = head.rfind("\n")
    return Layout(
        header=header,
        command=head + proof,
        header_lines=header_lines,
        proof_offset=len(head),
        proof_line=header_lines + head.count("\n") + 1,
        proof_column=len(head) - (last_newline + 1),
    )
