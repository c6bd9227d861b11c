"""Verdicts already reached: the same (header, statement, proof) under the same policy is checked once.

A bounded in-memory LRU, backed by an optional sqlite file that outlives the run. Only proved and
rejected verdicts are kept: a timeout may be the machine's fault (load) and an error is the
checker's, so both are checked again next time.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

from prover.verifier.verdict import ProofRequest, Status, Verdict

MEMORY_ENTRIES = 200_000  # about 1 KB each with Lean's messages
CACHEABLE = (Status.PROVED, Status.REJECTED)


class VerdictCache:
    """``get``/``put`` by request; ``policy`` (allowlist, native, Lean version) is part of every key."""

    def __init__(self, path: str | Path | None = None, policy: str = "", max_entries: int = MEMORY_ENTRIES):
        self._policy = policy
        self._memory: OrderedDict[str, Verdict] = OrderedDict()
        self._max = max_entries
        self._db: sqlite3.Connection | None = None
        if path:
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
            # One connection, used from the pool's event-loop thread only.
            self._db = sqlite3.connect(str(Path(path).expanduser()), check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL: a crash loses at most the last commits
            self._db.execute("CREATE TABLE IF NOT EXISTS verdicts (key TEXT PRIMARY KEY, verdict TEXT NOT NULL)")
            self._db.commit()

    def key(self, request: ProofRequest) -> str:
        return hashlib.sha256(f"{self._policy}\x00{request.key()}".encode()).hexdigest()

    def get(self, key: str) -> Verdict | None:
        """A copy of the stored verdict marked ``cached``, or None."""
        verdict = self._memory.get(key)
        if verdict is not None:
            self._memory.move_to_end(key)
        elif self._db is not None:
            row = self._db.execute("SELECT verdict FROM verdicts WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            verdict = Verdict.from_json(json.loads(row[0]))
            self._remember(key, verdict)
        else:
            return None
        return replace(verdict, cached=True, time=0.0, messages=list(verdict.messages))

    def put(self, key: str, verdict: Verdict) -> None:
        if verdict.status not in CACHEABLE:
            return
        self._remember(key, verdict)
        if self._db is not None:
            self._db.execute("INSERT OR REPLACE INTO verdicts VALUES (?, ?)", (key, json.dumps(verdict.to_json())))
            self._db.commit()

    def _remember(self, key: str, verdict: Verdict) -> None:
        self._memory[key] = verdict
        self._memory.move_to_end(key)
        if len(self._memory) > self._max:
            self._memory.popitem(last=False)

    def __len__(self) -> int:
        return len(self._memory)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
