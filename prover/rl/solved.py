"""Every distinct proof found during training, one JSON line each (problem name, statement, proof, step).

The file is append-only and flushed per batch, so a crashed run loses nothing it reported; a resumed
run reads it back and writes a (name, proof) pair only once.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _proof_key(name: str, proof: str) -> str:
    return hashlib.sha256(f"{name}\x00{proof}".encode()).hexdigest()


class SolvedProofs:
    """The solved-proof JSONL of a run: read on open, appended to by ``add``."""

    FIELDS = ("name", "statement", "proof", "step")

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._seen: set[str] = set()
        self.names: set[str] = set()
        if self.path.exists():
            text = self.path.read_text()
            if text and not text.endswith("\n"):  # a write cut short by a crash or Ctrl-C: no whole record
                logger.warning("%s: dropping a torn last line (an interrupted write)", self.path)
                text = text[: text.rfind("\n") + 1]
                self.path.write_text(text)
            for lineno, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    name, proof = record["name"], record["proof"]
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ValueError(f"{self.path}:{lineno}: not a solved-proof record ({exc})") from exc
                self._seen.add(_proof_key(name, proof))
                self.names.add(name)
            logger.info("read %d solved proofs of %d theorems from %s", len(self._seen), len(self.names), self.path)

    def __len__(self) -> int:
        return len(self._seen)

    def truncate_from(self, step: int) -> int:
        """Drop the records found once ``step`` optimizer steps were done, or later (a run resumed from that
        step's checkpoint finds them again); returns how many were dropped. The file is replaced atomically."""
        if not self.path.exists():
            return 0
        records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        kept = [r for r in records if r.get("step", 0) < step]
        if len(kept) == len(records):
            return 0
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
        tmp.replace(self.path)
        self._seen = {_proof_key(r["name"], r["proof"]) for r in kept}
        self.names = {r["name"] for r in kept}
        logger.info(
            "dropped %d solved proofs found from step %d on (the checkpoint resumed from)",
            len(records) - len(kept),
            step,
        )
        return len(records) - len(kept)

    def add(self, records: Iterable[dict[str, Any]], step: int) -> int:
        """Append the proofs not seen before; returns how many were new."""
        new = []
        for r in records:
            key = _proof_key(r["name"], r["proof"])
            if key in self._seen:
                continue
            self._seen.add(key)
            self.names.add(r["name"])
            new.append({"name": r["name"], "statement": r["statement"], "proof": r["proof"], "step": step})
        if new:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as f:
                f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in new)
        return len(new)
