"""Check a file of proofs: ``python -m prover.verify INPUT.jsonl [--out verdicts.jsonl] [--workers N]
[--timeout S] [--static-only] [--messages] [--config verifier.yaml] [--<VerifierConfig field> VALUE ...]``.

Each input line is a JSON object with ``statement`` and ``proof`` (and optionally ``name`` and
``header``; the default header is the DeepSeek-Prover one, see ``DEFAULT_HEADER``). A statement that
starts with its own imports is split into header and body. Each output line is the input object plus
``line``, ``status``, ``check``, ``reason``, ``time`` and ``cached`` (and Lean's ``messages`` with
``--messages``), in input order. A bad input line gets an output line with status ``error`` and
check ``input`` naming the problem; the other lines still run. With ``--out``, verdicts are written as
they come, so an interrupted run resumes: lines already in the output file are skipped. Each line
records in ``checked_with`` the mode and the settings that decided it; a resume under other ones
(``--static-only`` output, then a Lean run) is refused, naming the difference.

``python -m prover.verify serve [--service.port 8000 ...]`` serves the verifier over HTTP instead
(Kimina-compatible; see docs/service.md).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from prover.config import ConfigError, help_text, load_config
from prover.verifier import DEFAULT_HEADER, VerifierConfig, VerifierError, make_verifier
from prover.verifier.screen import screen
from prover.verifier.split import split_header
from prover.verifier.verdict import ProofRequest

logger = logging.getLogger("prover.verify")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prover.verify",
        description=__doc__.split("\n\n")[0],
        epilog="Any VerifierConfig field can be set as --field value:\n"
        + help_text(VerifierConfig, skip=("workers", "timeout")),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "input", type=Path, nargs="?", help="JSONL file: one {statement, proof[, name, header]} per line"
    )
    parser.add_argument(
        "--out", type=Path, help="JSONL file for the verdicts (default: standard output); resumes if it exists"
    )
    parser.add_argument("--workers", type=int, help="REPL workers (default: CPU count - 1)")
    parser.add_argument("--timeout", type=float, help="wall seconds per proof (default: 300)")
    parser.add_argument("--static-only", action="store_true", help="run only the static screen (no Lean needed)")
    parser.add_argument("--messages", action="store_true", help="include Lean's messages in the output")
    parser.add_argument("--config", help="YAML file with VerifierConfig fields")
    parser.add_argument(
        "--selftest",
        nargs="?",
        const="selftest",
        metavar="OUT_DIR",
        help="check the Lean setup instead of a file: honest proofs, known cheats and tactic steps "
        "through the real REPL; its answers are written to OUT_DIR (default ./selftest)",
    )
    parser.add_argument(
        "--golden",
        type=Path,
        help="with --selftest: also replay the REPL's recorded conversations "
        "under this folder (e.g. ../shared/golden/repl/v4.9.0)",
    )
    return parser


def read_requests(path: Path) -> tuple[list[tuple[int, dict, ProofRequest]], list[dict]]:
    """(line, record, request) for the good lines; an error record for each bad one."""
    good, bad = [], []
    with open(path, encoding="utf-8") as f:
        for n, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except ValueError as exc:
                bad.append(_input_error(n, f"not valid JSON ({exc})"))
                continue
            problem = _check_record(record)
            if problem:
                bad.append(_input_error(n, problem, record if isinstance(record, dict) else None))
                continue
            header, statement = record.get("header"), record["statement"]
            if header is None:
                split = split_header(statement)
                header, statement = (split.header, split.body) if split.header.strip() else (DEFAULT_HEADER, statement)
            good.append(
                (
                    n,
                    record,
                    ProofRequest(
                        statement=statement, proof=record["proof"], header=header, name=str(record.get("name", ""))
                    ),
                )
            )
    return good, bad


def _check_record(record: Any) -> str | None:
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    for key in ("statement", "proof"):
        if key not in record:
            return f"missing field {key!r}"
        if not isinstance(record[key], str):
            return f"field {key!r} must be a string, got {type(record[key]).__name__}"
    if not isinstance(record.get("header", ""), str):
        return "field 'header' must be a string"
    return None


def _input_error(line: int, reason: str, record: dict | None = None) -> dict:
    logger.error("input line %d: %s", line, reason)
    return {
        **(record or {}),
        "line": line,
        "status": "error",
        "check": "input",
        "reason": f"line {line}: {reason}",
        "time": 0.0,
        "cached": False,
    }


class ResumeError(ValueError):
    """The output file holds verdicts decided under another mode or other settings than this run's."""


def checked_with(args: argparse.Namespace, config: VerifierConfig) -> dict[str, Any]:
    """What decides a verdict line (and its fields): the mode, and in a Lean run the judge's settings.
    Workers, backend and resource limits only change how fast the same verdicts come."""
    if args.static_only:
        return {"mode": "static-only", "allow_native": config.allow_native}
    return {
        "mode": "lean",
        "timeout": config.timeout,
        "allow_native": config.allow_native,
        "axiom_allowlist": sorted(config.axiom_allowlist),
        "lean": config.repl_command or config.resolved_lean_project(),
        "messages": args.messages,
    }


def _difference(before: Any, now: dict[str, Any]) -> str:
    if not isinstance(before, dict):
        return "its lines do not say which mode and settings checked them (written before prover.verify recorded them)"
    changed = [
        f"{k}: {before.get(k)!r} there, {now.get(k)!r} now"
        for k in sorted(set(before) | set(now))
        if before.get(k) != now.get(k)
    ]
    return "it was checked with other settings (" + "; ".join(changed) + ")"


def answered_lines(out: Path, settings: dict[str, Any]) -> dict[int, str]:
    """The complete lines of ``out`` by input line number; reads only. A line answered under other
    settings raises ``ResumeError``: a screen-only ``passed_screen`` is not a Lean verdict, and a
    resume that kept it would never check that proof with Lean."""
    if not out.exists():
        return {}
    answered = {}
    for text in out.read_text(encoding="utf-8").splitlines(keepends=True):
        try:
            record = json.loads(text)
        except ValueError:
            continue
        if text.endswith("\n") and isinstance(record, dict) and isinstance(record.get("line"), int):
            if record.get("checked_with") != settings:
                raise ResumeError(
                    f"{out} holds verdicts this run would not give: "
                    f"{_difference(record.get('checked_with'), settings)}; "
                    "write to another --out, or delete the file to check every line again"
                )
            answered[record["line"]] = text
    return answered


def done_lines(out: Path, settings: dict[str, Any]) -> set[int]:
    """Lines already answered in ``out`` under ``settings`` (``ResumeError`` when under others, the
    file untouched); a torn last line (a crash mid-write) is dropped from the file."""
    if not out.exists():
        return set()
    answered = answered_lines(out, settings)
    out.write_text("".join(answered.values()), encoding="utf-8")
    return set(answered)


class OrderedWriter:
    """Writes records in line order as they complete, flushing each one (a crash loses nothing written)."""

    def __init__(self, stream: TextIO, lines: list[int], stamp: dict[str, Any] | None = None):
        self.stream = stream
        self.stamp = stamp  # added to each record as checked_with (see done_lines)
        self.order = collections.deque(sorted(lines))
        self.ready: dict[int, dict] = {}
        self.counts: collections.Counter = collections.Counter()
        self.bad_input = 0

    def put(self, record: dict) -> None:
        if self.stamp is not None:
            record = {**record, "checked_with": self.stamp}
        self.ready[record["line"]] = record
        self.counts[record["status"]] += 1
        self.bad_input += record["check"] == "input"
        while self.order and self.order[0] in self.ready:
            self.stream.write(json.dumps(self.ready.pop(self.order.popleft()), ensure_ascii=False) + "\n")
        self.stream.flush()


def verdict_record(line: int, record: dict, verdict, with_messages: bool) -> dict:
    out = {
        **record,
        "line": line,
        "status": verdict.status.value,
        "check": verdict.check,
        "reason": verdict.reason,
        "time": round(verdict.time, 3),
        "cached": verdict.cached,
    }
    if with_messages:
        out["messages"] = verdict.messages
    return out


def run(args: argparse.Namespace, config: VerifierConfig, stream: TextIO, progress: tqdm) -> OrderedWriter:
    good, bad = read_requests(args.input)
    settings = checked_with(args, config)
    done = done_lines(args.out, settings) if args.out else set()
    good = [g for g in good if g[0] not in done]
    bad = [b for b in bad if b["line"] not in done]
    writer = OrderedWriter(stream, [n for n, _, _ in good] + [b["line"] for b in bad], stamp=settings)
    progress.reset(total=len(good) + len(bad))
    for record in bad:
        writer.put(record)
        progress.update()
    if args.static_only:
        for n, record, req in good:
            reason = screen(req.proof, allow_native=config.allow_native)
            status, why = (
                ("rejected", f"screen: {reason}")
                if reason
                else ("passed_screen", "passed the static screen; Lean not run")
            )
            writer.put(
                {**record, "line": n, "status": status, "check": "screen", "reason": why, "time": 0.0, "cached": False}
            )
            progress.update()
        return writer
    with make_verifier(config) as pool:  # a local REPL pool, or Ray actors with --backend ray
        futures = collections.deque()
        for n, record, req in good:
            futures.append((n, record, pool.submit(req)))  # blocks when max_pending are in flight
            while futures and futures[0][2].done():
                _finish(writer, progress, *futures.popleft(), args.messages)
        while futures:
            _finish(writer, progress, *futures.popleft(), args.messages)
    return writer


def _finish(writer: OrderedWriter, progress: tqdm, line: int, record: dict, future, with_messages: bool) -> None:
    writer.put(verdict_record(line, record, future.result(), with_messages))
    progress.update()
    progress.set_postfix(writer.counts, refresh=False)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["serve"]:  # the HTTP service (docs/service.md)
        try:
            from prover.verifier.service.cli import main as serve
        except ImportError as exc:
            print(
                f"error: serve needs the service extra ({exc.name} is missing): pip install -e .[service]",
                file=sys.stderr,
            )
            return 2
        return serve(argv[1:])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args, rest = make_parser().parse_known_args(argv)
    overrides = list(rest) + (["--config", args.config] if args.config else [])
    overrides += [f"--workers={args.workers}"] if args.workers is not None else []
    overrides += [f"--timeout={args.timeout}"] if args.timeout is not None else []
    try:
        config = load_config(VerifierConfig, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.selftest:
        from prover.verifier.selftest import run_selftest

        try:
            return run_selftest(config, Path(args.selftest), args.golden)
        except VerifierError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    if args.input is None:
        print("error: give an input file, or --selftest", file=sys.stderr)
        return 2
    if not args.input.is_file():
        print(f"error: input file {args.input} does not exist", file=sys.stderr)
        return 2
    if args.out:
        try:  # before the progress bar or the verifier start: a refused resume is one line
            answered_lines(args.out, checked_with(args, config))
        except ResumeError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    start = time.monotonic()
    stream = open(args.out, "a", encoding="utf-8") if args.out else sys.stdout
    try:
        with tqdm(desc="verifying", unit="proof", file=sys.stderr, dynamic_ncols=True) as progress:
            writer = run(args, config, stream, progress)
    except VerifierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.out:
            stream.close()
    elapsed = time.monotonic() - start
    total = sum(writer.counts.values())
    summary = ", ".join(f"{k} {v}" for k, v in sorted(writer.counts.items()))
    print(
        f"{total} lines in {elapsed:.1f} s ({total / max(elapsed, 1e-9):.1f}/s): {summary or 'nothing to do'}"
        + (f"; verdicts in {args.out}" if args.out else ""),
        file=sys.stdout if args.out else sys.stderr,
    )
    return 1 if writer.bad_input else 0


if __name__ == "__main__":
    sys.exit(main())
