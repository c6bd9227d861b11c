"""A search's run directory: every verified attempt is appended as it comes, so a search that
crashed (or was stopped) resumes without checking the same proofs again."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

from prover.data.problem import Problem
from prover.search.progress import SearchProgress
from prover.verifier.verdict import Verdict

logger = logging.getLogger(__name__)


def problem_dir(run_dir: str | Path, problem: Problem) -> Path:
    """One folder per theorem: its name and a hash of header + statement (users reuse names)."""
    digest = hashlib.sha256(f"{problem.header}\x00{problem.statement}".encode()).hexdigest()[:10]
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", problem.name)[:60] or "theorem"
    return Path(run_dir) / f"{slug}-{digest}"


class AttemptLog:
    """``attempts.jsonl`` (one verified proof a line) and ``result.json`` for one theorem."""

    def __init__(self, run_dir: str | Path, problem: Problem):
        self.dir = problem_dir(run_dir, problem)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "attempts.jsonl"
        problem_file = self.dir / "problem.json"
        if not problem_file.exists():
            problem_file.write_text(
                json.dumps({"name": problem.name, "header": problem.header, "statement": problem.statement}, indent=2)
            )

    def load(self) -> tuple[dict[str, Verdict], dict[str, int]]:
        """Earlier attempts (proof -> verdict) and the counters they had reached."""
        tried: dict[str, Verdict] = {}
        counters: dict[str, int] = {}
        if not self.path.exists():
            return tried, counters
        with self.path.open() as f:
            for n, line in enumerate(f, 1):
                try:
                    row = json.loads(line)
                    tried[row["proof"].rstrip()] = Verdict.from_json(row["verdict"])
                    counters = row["counters"]
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                    # The last line of a crashed run may be cut short; anything else is worth a warning too.
                    logger.warning("%s line %d is unreadable (%s); it is skipped", self.path, n, exc)
        return tried, counters

    def append(self, proof: str, verdict: Verdict, progress: SearchProgress) -> None:
        snap = progress.snapshot()
        counters = {"samples": snap.samples, "rounds": snap.rounds, "expansions": snap.expansions}
        with self.path.open("a") as f:
            f.write(
                json.dumps({"proof": proof, "verdict": verdict.to_json(), "counters": counters}, ensure_ascii=False)
                + "\n"
            )

    def write_result(self, result: dict[str, Any]) -> None:
        (self.dir / "result.json").write_text(json.dumps(result, indent=2, ensure_ascii=False))
