#!/usr/bin/env python3
"""How many honest proofs the static screen refuses: ``python scripts/screen_real_proofs.py
[--data ../shared/data/real_proofs.jsonl] [--allow-native] [--examples N]``.

``real_proofs.jsonl`` holds whole proofs that Lean accepted in their sources (DeepSeek-Prover-V2,
Kimina-Prover, Goedel-Prover, DeepSeek-Prover-V2-7B, compfiles; ../shared/data/README.md), so every
rejection is wrongful unless a stated policy explains it:

* ``native``: ``native_decide`` and friends without ``allow_native``: they trust the compiler, not
  the kernel.
* ``declarations after the proof``: a new declaration at the start of a line after the proof. The
  checked text is trusted header + trusted statement + the model's proof, and the proof is the tail
  of that one declaration. Anything after it is a new command, and a keyword screen cannot tell a
  harmless extra ``theorem`` from one that changes what later checks see (an ``instance``, an
  ``attribute``, an ``elab``); the extra theorems prove nothing about the problem either.

Prints the counts per rule (wrongful and by policy) and per source, and exits 1 when any rejection is
wrongful.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prover.verifier.screen import screen_result  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "real_proofs.jsonl"
# Words that start a declaration (with its modifiers) at the beginning of a line.
DECLARATION_STARTS = (
    "theorem",
    "lemma",
    "def",
    "abbrev",
    "example",
    "instance",
    "structure",
    "class",
    "inductive",
    "axiom",
    "noncomputable",
    "private",
    "protected",
    "@[",
)


def policy(proof: str, rule: str, pos: int, allow_native: bool) -> str | None:
    """The stated policy that explains a rejection, or None when the rejection is wrongful."""
    if rule == "native" and not allow_native:
        return "native"
    at_line_start = pos == 0 or proof[pos - 1] == "\n"
    if rule == "command" and at_line_start and proof.startswith(DECLARATION_STARTS, pos):
        return "declarations after the proof"
    return None


def measure(rows: list[dict], allow_native: bool) -> dict:
    """Counts of rejections per (rule, policy) and per source, with one example each."""
    per_rule: collections.Counter = collections.Counter()
    per_source: collections.Counter = collections.Counter()
    examples: dict[tuple[str, str | None], list[str]] = collections.defaultdict(list)
    for row in rows:
        result = screen_result(row["proof"], allow_native=allow_native)
        if result is None:
            continue
        why = policy(row["proof"], result.rule, result.pos, allow_native)
        per_rule[(result.rule, why)] += 1
        per_source[(row["source"].split()[0], why is None)] += 1
        examples[(result.rule, why)].append(f"{row['name']}: {result.reason}")
    wrongful = sum(n for (_, why), n in per_rule.items() if why is None)
    return {
        "proofs": len(rows),
        "rejected": sum(per_rule.values()),
        "wrongful": wrongful,
        "per_rule": per_rule,
        "per_source": per_source,
        "examples": examples,
    }


def read_rows(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            try:
                row = json.loads(line)
                if not isinstance(row.get("proof"), str):
                    raise ValueError("field 'proof' is missing or not a string")
            except (ValueError, AttributeError) as exc:
                raise SystemExit(f"error: {path} line {n}: {exc}") from None
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="JSONL with name, source and proof per line")
    parser.add_argument("--allow-native", action="store_true", help="screen as with verifier.allow_native")
    parser.add_argument("--examples", type=int, default=2, help="examples shown per rule")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        print(f"error: no file {args.data} (point --data to real_proofs.jsonl)", file=sys.stderr)
        return 2
    report = measure(read_rows(args.data), args.allow_native)
    print(
        f"{report['proofs']} proofs, {report['rejected']} rejected, {report['wrongful']} wrongfully"
        f" (allow_native={args.allow_native})"
    )
    print(f"{'rule':<12} {'policy':<32} {'proofs':>6}")
    for (rule, why), n in sorted(report["per_rule"].items(), key=lambda kv: -kv[1]):
        print(f"{rule:<12} {why or 'WRONGFUL':<32} {n:>6}")
        for example in report["examples"][(rule, why)][: args.examples]:
            print(f"    {example[:150]}")
    print("per source (rejected by policy / wrongfully):")
    sources = sorted({s for s, _ in report["per_source"]})
    for source in sources:
        print(f"  {source:<50} {report['per_source'][(source, False)]:>5} / {report['per_source'][(source, True)]}")
    return 1 if report["wrongful"] else 0


if __name__ == "__main__":
    sys.exit(main())
