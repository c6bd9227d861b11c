"""The results file of a run: one JSON line per (problem, sample), only ever appended to.

A crash can leave a torn last line; it is skipped on reading, and the next append starts on a new
line so no complete record is ever damaged. A sample's record is final unless its verdict is
ERROR (the checker failed, not the proof): such a sample is checked again on resume and the new
record, appended later, supersedes it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prover.verifier.verdict import Status

logger = logging.getLogger(__name__)

RESULTS_FILE = "samples.jsonl"
REQUIRED_KEYS = ("problem", "sample", "status")


class RecordsError(RuntimeError):
    """A results file that this evaluator did not write (a complete line that is not a record)."""


def read_records(path: str | Path) -> tuple[dict[tuple[str, int], dict[str, Any]], int]:
    """The record in force for each ``(problem, sample)``, and how many unreadable lines were skipped."""
    path = Path(path)
    records: dict[tuple[str, int], dict[str, Any]] = {}
    if not path.exists():
        return records, 0
    skipped = 0
    data = path.read_bytes()
    lines = data.split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            torn = number == len(lines) and not data.endswith(b"\n")
            where = "a torn last line (interrupted write)" if torn else "an unreadable line"
            logger.warning("%s:%d: skipping %s", path, number, where)
            skipped += 1
            continue
        if not isinstance(record, dict) or any(key not in record for key in REQUIRED_KEYS):
            raise RecordsError(f"{path}:{number}: not an evaluation record (needs keys {list(REQUIRED_KEYS)})")
        try:
            Status(record["status"])
        except ValueError:
            raise RecordsError(f"{path}:{number}: unknown status {record['status']!r}") from None
        key = (str(record["problem"]), int(record["sample"]))
        previous = records.get(key)
        if previous is not None and previous["status"] != Status.ERROR.value:
            logger.warning("%s:%d: a second record for %s sample %d; the first one stands", path, number, *key)
            continue
        records[key] = record
    return records, skipped


class RecordWriter:
    """Appends records, one ``write`` per line, flushed at once and synced to disk by ``sync``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        torn = self.path.exists() and self.path.stat().st_size > 0 and not self._ends_with_newline()
        self._file = open(self.path, "a", encoding="utf-8")
        if torn:  # leave the fragment where it is, start the next record on its own line
            self._file.write("\n")

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"

    def write(self, records: Iterable[dict[str, Any]]) -> None:
        for record in records:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._file.flush()

    def sync(self) -> None:
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
