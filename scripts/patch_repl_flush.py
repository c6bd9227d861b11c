#!/usr/bin/env python3
"""Make a Lean REPL older than v4.10.0 flush stdout after each answer: ``patch_repl_flush.py REPL/Main.lean``.

Up to tag v4.9.0 (and DeepSeek-Prover-V1.5's fork of upstream 7df77c0) the REPL's loop ends each
answer with ``IO.println ""`` and never flushes. Lean's stdout is a C ``FILE*`` (``lean_get_stdout``
in src/runtime/io.cpp), block-buffered when it is a pipe, so the answer stays in the buffer until the
process exits and a client that keeps the REPL open waits forever. The upstream fix (REPL PR #49,
commit 4fc1e6d) arrived with v4.10.0 and no commit with it builds on Lean v4.9.0, so setup inserts
one line of its own after that print: ``(← IO.getStdout).flush``.

The edit is idempotent (a marker comment), leaves a REPL that already flushes alone, and stops with
an error when the loop does not look as expected instead of guessing. Only the standard library is
used: scripts/setup_lean.sh runs this before any virtual environment exists.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

MARKER = "-- prover: flush each answer (scripts/patch_repl_flush.py)"
# The print that ends an answer in the REPL's loop (REPL/Main.lean, `where loop`).
BLANK_LINE_PRINT = re.compile(r'^(?P<indent>[ \t]+)IO\.println ""(?:[ \t]*--.*)?$', re.M)
# Upstream's own fix prints through a helper that flushes (`printFlush`, REPL v4.10.0 on).
ALREADY_FLUSHES = re.compile(r"\.flush\b")


class PatchError(Exception):
    """The file is not a REPL Main.lean this patch knows how to edit."""


def needs_flush(text: str) -> bool:
    """True when the REPL's loop prints answers without ever flushing stdout."""
    return MARKER not in text and not ALREADY_FLUSHES.search(text)


def add_flush(text: str) -> str:
    """``text`` with a flush after the blank line that ends each answer (unchanged when not needed)."""
    if not needs_flush(text):
        return text
    prints = list(BLANK_LINE_PRINT.finditer(text))
    if len(prints) != 1:
        raise PatchError(f'expected one `IO.println ""` ending each answer in the REPL\'s loop, found {len(prints)}')
    m = prints[0]
    flush = f"\n{m.group('indent')}(← IO.getStdout).flush {MARKER}"
    return text[: m.end()] + flush + text[m.end() :]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: patch_repl_flush.py PATH/TO/REPL/Main.lean", file=sys.stderr)
        return 2
    path = Path(argv[0])
    try:
        text = path.read_text(encoding="utf-8")
        patched = add_flush(text)
    except (OSError, PatchError) as exc:
        print(f"error: {path}: {exc}", file=sys.stderr)
        return 1
    if patched == text:
        print(f"{path}: the REPL already flushes each answer; left as is")
    else:
        path.write_text(patched, encoding="utf-8")
        print(f"{path}: added a flush after each answer")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
