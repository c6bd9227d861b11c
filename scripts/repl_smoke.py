#!/usr/bin/env python3
"""Check one proof through a Lean REPL the way the verifier talks to it: ``repl_smoke.py [--timeout S] -- CMD...``.

The request is sent and the answer read while the REPL's stdin stays open, as a long-lived worker
does. A REPL that does not flush stdout (tags up to v4.9.0 without scripts/patch_repl_flush.py) keeps
its answer in a buffer until it exits, so this fails with that diagnosis, where a smoke test that
closes stdin (which makes the REPL exit and flush) would pass. Standard library only: it runs from
scripts/setup_lean.sh before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import subprocess
import sys
import time

HEADER = "import Mathlib\nimport Aesop"
PROOF = "theorem smoke : (2 : ℕ) + 2 = 4 := by norm_num"


def read_answer(proc: subprocess.Popen, deadline: float) -> str | None:
    """The REPL's next answer (text up to a blank line), or None when none came before ``deadline``."""
    buffer = b""
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while b"\n\n" not in buffer.lstrip(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                return None
            chunk = os.read(proc.stdout.fileno(), 1 << 16)
            if not chunk:
                return buffer.decode(errors="replace") or None
            buffer += chunk
    return buffer.decode(errors="replace").strip()


def ask(proc: subprocess.Popen, request: dict, timeout: float) -> str | None:
    proc.stdin.write((json.dumps(request, ensure_ascii=False) + "\n\n").encode())
    proc.stdin.flush()
    return read_answer(proc, time.monotonic() + timeout)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds to wait for each answer (import Mathlib takes ~20 s)"
    )
    parser.add_argument("--header", default=HEADER, help="the first command (imports)")
    parser.add_argument("--proof", default=PROOF, help="a theorem and its proof, checked on the header's environment")
    parser.add_argument("command", nargs="+", help="the command that starts the REPL, after --")
    args = parser.parse_args(argv)
    proc = subprocess.Popen(args.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        header = ask(proc, {"cmd": args.header}, args.timeout)
        if header is None:
            print(
                f"error: the REPL gave no answer to the header within {args.timeout:g} s while its input stayed "
                "open. If it answers once its input is closed, it does not flush stdout (REPL tags up to v4.9.0): "
                "apply scripts/patch_repl_flush.py to its REPL/Main.lean and rebuild it.",
                file=sys.stderr,
            )
            return 1
        if '"env"' not in header or '"severity": "error"' in header:
            print(f"error: the REPL did not load the header; it answered:\n{header}", file=sys.stderr)
            return 1
        env = json.loads(header)["env"]
        answer = ask(proc, {"cmd": args.proof, "env": env}, args.timeout)
        if answer is None or '"env"' not in answer or '"severity": "error"' in answer:
            print(f"error: the REPL did not check the smoke proof; it answered:\n{answer}", file=sys.stderr)
            return 1
    finally:
        proc.kill()
        proc.wait()
    print("smoke test passed: the REPL answered the header and a proof with its input still open")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
