#!/usr/bin/env python3
"""A replay of the real Lean REPL: it answers requests with the answers the REPL itself printed in its
own test suite, recorded in ``../shared/golden/repl/{v4.9.0,main}`` (leanprover-community/repl
``test/``: each ``NAME.in`` holds requests, blank-line separated, and ``NAME.expected.out`` the answers).

    python tests/golden_replay.py repl --golden DIR [--golden DIR ...] [--stdout flushed|buffered]
                                       [--check-lean-path] [--axioms NAME=AX,AX ...]
    python tests/golden_replay.py lake [--paths relative|absolute] env CMD ...

``repl``: reads requests as the REPL does (lines up to a blank line) and answers each one with the
recorded answer, verbatim, of a conversation whose requests so far equal the requests received so
far (compared as JSON; a ``cmd``'s trailing whitespace is ignored, since the verifier ends its
header with a newline). A request no recording holds ends the process with exit code 3 and the
reason on stderr, which a client sees as a crash: a replay never invents a verdict. Recorded
request blocks are read as REPL main reads them (each line trimmed, then joined), which is how
``line_breaks.in`` and ``invalid_line_break.in`` were answered.

Switches for the behaviours of the real REPL and Lake that the recordings cannot show:

* ``--stdout buffered`` acts like REPL tags up to v4.9.0: answers go to a block buffer of 4096
  bytes (glibc's for a pipe; Lean writes stdout through a C ``FILE*``) that is written out only when
  it fills or when the process exits, never after an answer. ``flushed`` (the default) acts like
  REPL v4.10.0 on (PR #49) and like an older REPL after scripts/patch_repl_flush.py.
* ``--check-lean-path`` makes the first request's imports look up their package in ``LEAN_PATH`` as
  Lean does, relative to the working directory (src/Lean/Util/Path.lean, ``findOLean``): with no
  entry holding ``Mathlib/`` or ``Mathlib.olean`` the answer is Lean's "unknown module prefix"
  error at line 1 (src/Lean/Elab/Import.lean, ``processHeader``) instead of the recording.
* ``--axioms NAME=AX,...`` answers ``#print axioms`` (no recording has one) in the words of Lean's
  ``printAxiomsOf`` (src/Lean/Elab/Print.lean, the same at v4.9.0 and on main): one info message per
  constant the name resolves to, ``'NAME' depends on axioms: [a, b]`` or ``'NAME' does not depend on
  any axioms``, the list wrapped as Lean's formatter does past 120 columns (``[a,`` then each further
  axiom on its own line indented by one space). A name resolves as Lean resolves it under the
  ``open`` lines of the first request: ``N.NAME`` for each opened namespace ``N`` in the table comes
  before ``NAME`` itself; ``_root_.NAME`` resolves to ``NAME`` alone. These answers take no env
  number, so recorded env numbers after one are those of the recording.

``lake``: acts like ``lake env`` before lean4 PR #7822 (2025-04; Lean v4.9.0 included): runs CMD with
``LEAN_PATH`` set to each package's ``.lake/build/lib`` written relative to the project (``./`` and
``././`` prefixes, lean4 issue #4042), or absolute with ``--paths absolute`` (as Lake does from PR
#7822 on). The packages are ``.lake/packages/*`` of the working directory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

WIDTH = 120  # Lean's default format width (`format.width`)
IMPORT = re.compile(r"^\s*import\s+(\S+)", re.M)
OPEN = re.compile(r"^\s*open\s+([^\n]+)", re.M)
PRINT_AXIOMS = re.compile(r"^\s*#print\s+axioms\s+(\S+)\s*$")


def request_blocks(text: str) -> list[str]:
    return [b for b in re.split(r"\n\s*\n", text) if b.strip()]


def parse_request(block: str):
    """A recorded request as the REPL reads it: lines trimmed and joined, then parsed."""
    return json.loads("".join(line.strip() for line in block.splitlines()))


def normalise(request):
    if isinstance(request, dict) and isinstance(request.get("cmd"), str):
        return {**request, "cmd": request["cmd"].rstrip()}
    return request


def conversations(roots: list[str]) -> list[tuple[str, list, list[str]]]:
    """(name, requests, raw answers) of every recorded conversation under ``roots`` with both files."""
    found = []
    for root in roots:
        for inp in sorted(Path(root).rglob("*.in")):
            out = inp.with_name(inp.name[:-3] + ".expected.out")
            if not out.is_file():
                continue
            requests = [normalise(parse_request(b)) for b in request_blocks(inp.read_text(encoding="utf-8"))]
            answers = request_blocks(out.read_text(encoding="utf-8"))
            found.append((str(inp), requests, answers))
    return found


def axioms_message(name: str, axioms: list[str]) -> str:
    """``#print axioms`` for one constant, wrapped as Lean's formatter does at 120 columns."""
    if not axioms:
        return f"'{name}' does not depend on any axioms"
    head = f"'{name}' depends on axioms: "
    flat = f"{head}[{', '.join(axioms)}]"
    if len(flat) <= WIDTH:
        return flat
    return head + "[" + ",\n ".join(axioms) + "]"


class Replay:
    def __init__(self, args):
        self.args = args
        self.recorded = conversations(args.golden)
        if not self.recorded:
            sys.exit(f"replay: no recorded conversations under {args.golden}")
        self.axioms = {}
        for item in args.axioms or []:
            name, _, listed = item.partition("=")
            self.axioms[name] = [a for a in listed.split(",") if a]
        self.history: list = []
        self.opened: list[str] = []

    def answer(self, request) -> str:
        if isinstance(request, dict) and "env" not in request and not self.history:
            self.opened = [ns for line in OPEN.findall(request.get("cmd", "")) for ns in line.split()]
            if self.args.check_lean_path:
                missing = self.missing_package(request.get("cmd", ""))
                if missing:
                    self.history.append(normalise(request))
                    return self.unknown_package(missing)
        printed = PRINT_AXIOMS.match(request.get("cmd", "")) if isinstance(request, dict) else None
        if printed and self.axioms:
            return self.print_axioms(printed.group(1))
        self.history.append(normalise(request))
        n = len(self.history)
        answers = {
            answers[n - 1]
            for _, requests, answers in self.recorded
            if len(requests) >= n and requests[:n] == self.history
        }
        if len(answers) != 1:
            why = "no recording" if not answers else f"{len(answers)} different recorded answers"
            sys.stderr.write(f"replay: {why} for request {n}: {json.dumps(request, ensure_ascii=False)[:300]}\n")
            sys.stderr.flush()
            sys.stdout.flush()
            os._exit(3)
        return answers.pop()

    def missing_package(self, cmd: str) -> str | None:
        entries = [e for e in os.environ.get("LEAN_PATH", "").split(os.pathsep) if e]
        for module in IMPORT.findall(cmd):
            root = module.split(".")[0]
            if root in ("Init", "Lean", "Std", "Lake"):  # in the toolchain's own library
                continue
            if not any(Path(e, root).is_dir() or Path(e, root + ".olean").is_file() for e in entries):
                return root
        return None

    def unknown_package(self, root: str) -> str:
        entries = [e for e in os.environ.get("LEAN_PATH", "").split(os.pathsep) if e]
        data = (
            f"unknown module prefix '{root}'\n\nNo directory '{root}' or file '{root}.olean' in the search path "
            f"entries:\n" + "\n".join(entries)
        )
        message = {"severity": "error", "pos": {"line": 1, "column": 0}, "endPos": None, "data": data}
        return json.dumps({"messages": [message], "env": 0}, indent=1, ensure_ascii=False)

    def print_axioms(self, name: str) -> str:
        if name.startswith("_root_."):
            candidates = [name.removeprefix("_root_.")]
        else:
            candidates = [f"{ns}.{name}" for ns in self.opened] + [name]
        found = [c for c in candidates if c in self.axioms]
        if not found:
            message = {
                "severity": "error",
                "pos": {"line": 1, "column": 15},
                "endPos": {"line": 1, "column": 15 + len(name)},
                "data": f"unknown constant '{name}'",
            }
            return json.dumps({"messages": [message], "env": len(self.history)}, indent=1, ensure_ascii=False)
        messages = [
            {
                "severity": "info",
                "pos": {"line": 1, "column": 0},
                "endPos": {"line": 1, "column": 6},
                "data": axioms_message(c, self.axioms[c]),
            }
            for c in found
        ]
        return json.dumps({"messages": messages, "env": len(self.history)}, indent=1, ensure_ascii=False)


def read_request(stream) -> str | None:
    """Lines up to a blank line, as the REPL's getLines reads them (None at the end of input)."""
    lines = []
    for line in stream:
        if not line.strip():
            if lines:
                return "".join(line.strip() for line in lines)
            continue
        lines.append(line)
    return "".join(line.strip() for line in lines) if lines else None


def run_repl(args) -> None:
    replay = Replay(args)
    if args.stdout == "buffered":
        out = open(sys.stdout.fileno(), "w", buffering=4096, encoding="utf-8", closefd=False)
    else:
        out = sys.stdout
    while (text := read_request(sys.stdin)) is not None:
        try:
            request = json.loads(text)
        except ValueError:
            sys.stderr.write("Could not parse JSON\n")
            out.flush()
            sys.exit(1)
        out.write(replay.answer(request) + "\n\n")
        if args.stdout == "flushed":
            out.flush()
    out.flush()  # at exit, as the C runtime flushes its buffers


def run_lake(args) -> None:
    if not args.command or args.command[0] != "env":
        sys.exit("golden_replay lake: only `lake env CMD ...` is acted out")
    root = Path.cwd()
    libs = [Path(".lake/build/lib")] + [
        p.relative_to(root) / ".lake/build/lib" for p in sorted((root / ".lake/packages").glob("*"))
    ]
    if args.paths == "relative":
        entries = ["./" + str(libs[0])] + ["././" + str(p) for p in libs[1:]]
    else:
        entries = [str(root / p) for p in libs]
    env = dict(
        os.environ,
        LEAN_PATH=os.pathsep.join(entries),
        LEAN_SYSROOT=str(root / "toolchain"),
        LAKE="lake",
        LD_LIBRARY_PATH=("./" + str(libs[0])) if args.paths == "relative" else str(root / libs[0]),
    )
    command = args.command[1:] or ["env"]
    os.execvpe(command[0], command, env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="tool", required=True)
    repl = sub.add_parser("repl")
    repl.add_argument("--golden", action="append", required=True, help="folder of NAME.in / NAME.expected.out")
    repl.add_argument("--stdout", choices=["flushed", "buffered"], default="flushed")
    repl.add_argument("--check-lean-path", action="store_true")
    repl.add_argument("--axioms", action="append", help="NAME=AX,AX: what `#print axioms NAME` lists")
    lake = sub.add_parser("lake")
    lake.add_argument("--paths", choices=["relative", "absolute"], default="relative")
    lake.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    run_repl(args) if args.tool == "repl" else run_lake(args)


if __name__ == "__main__":
    main()
