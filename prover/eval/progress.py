"""The progress bar of an evaluation: problems done, samples verified, running pass@1 and pass@N, ETA."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from prover.data.problem import Problem
from prover.verifier.verdict import Status


class EvalProgress:
    """Running figures over the problems whose samples are all recorded (the final numbers come from
    ``summarize``; these are plain means, pass@1 = c/n and pass@N = solved fraction, without intervals)."""

    def __init__(self, problems: int, samples: int, enabled: bool = True):
        self.samples = samples
        self._statuses: dict[str, dict[int, str]] = {}
        self._lock = threading.Lock()
        self._progress = Progress(
            BarColumn(bar_width=20), MofNCompleteColumn(), TextColumn("problems · {task.fields[verified]} verified ·"),
            TextColumn("pass@1 {task.fields[pass1]} · pass@{task.fields[n]} {task.fields[passn]} ·"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            disable=not enabled,
        )
        self._task = self._progress.add_task("eval", total=problems, **self._fields())

    def seed_with(self, records: Mapping[tuple[str, int], Mapping[str, Any]], problems: Sequence[Problem],
                  samples: int) -> None:
        """Count what a resumed run already holds (does not move the ETA clock)."""
        wanted = {p.name for p in problems}
        with self._lock:
            for (name, index), record in records.items():
                if name in wanted and index < samples:
                    self._statuses.setdefault(name, {})[index] = record["status"]
            self._progress.reset(self._task, total=len(problems), completed=self._done(), **self._fields())

    def add(self, problem: str, records: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            statuses = self._statuses.setdefault(problem, {})
            for record in records:
                statuses[record["sample"]] = record["status"]
            self._progress.update(self._task, completed=self._done(), **self._fields())

    def _done(self) -> int:
        return sum(len(s) == self.samples for s in self._statuses.values())

    def _fields(self) -> dict[str, Any]:
        rates = []
        for statuses in self._statuses.values():
            usable = [s for s in statuses.values() if s != Status.ERROR.value]
            if len(statuses) == self.samples and usable:
                rates.append(sum(s == Status.PROVED.value for s in usable) / len(usable))
        fields = {"verified": sum(len(s) for s in self._statuses.values()), "n": self.samples,
                  "pass1": "-", "passn": "-"}
        if rates:
            fields.update(pass1=f"{sum(rates) / len(rates):.3f}", passn=f"{sum(r > 0 for r in rates) / len(rates):.3f}")
        return fields

    def __enter__(self) -> "EvalProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()
