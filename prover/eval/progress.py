"""The progress bar of an evaluation: problems done, samples verified, running pass@1 and pass@N, ETA."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from prover.data.problem import Problem
from prover.eval.report import make_console
from prover.verifier.verdict import Status

logger = logging.getLogger(__name__)


class EvalProgress:
    """Running figures over the problems whose samples are all recorded (the final numbers come from
    ``summarize``; these are plain means, pass@1 = c/n and pass@N = solved fraction, without intervals).

    Where stdout is not a terminal (a batch job's log file) a bar cannot redraw, so the same
    figures are logged every ``log_every`` seconds instead.
    """

    def __init__(self, problems: int, samples: int, enabled: bool = True, log_every: float = 60.0):
        self.samples = samples
        self.log_every = log_every
        self._statuses: dict[str, dict[int, str]] = {}
        self._rates: dict[str, float] = {}  # pass@1 of each finished problem
        self._rate_sum = 0.0
        self._solved = 0
        self._verified = 0
        self._lock = threading.Lock()
        self._last_log = time.monotonic()
        self._progress = Progress(
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("problems · {task.fields[verified]} verified ·"),
            TextColumn("pass@1 {task.fields[pass1]} · pass@{task.fields[n]} {task.fields[passn]} ·"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=make_console(stderr=True),
            disable=not enabled,
        )
        self._task = self._progress.add_task("eval", total=problems, **self._fields())
        self._log = enabled and not self._progress.console.is_terminal

    def seed_with(
        self, records: Mapping[tuple[str, int], Mapping[str, Any]], problems: Sequence[Problem], samples: int
    ) -> None:
        """Count what a resumed run already holds (does not move the ETA clock)."""
        wanted = {p.name for p in problems}
        by_problem: dict[str, list[Mapping[str, Any]]] = {}
        for (name, index), record in records.items():
            if name in wanted and index < samples:
                by_problem.setdefault(name, []).append(record)
        with self._lock:
            for name, problem_records in by_problem.items():
                self._update(name, problem_records)
            self._progress.reset(self._task, total=len(problems), completed=len(self._rates), **self._fields())

    def add(self, problem: str, records: Iterable[Mapping[str, Any]]) -> None:
        with self._lock:
            self._update(problem, records)
            fields = self._fields()
            self._progress.update(self._task, completed=len(self._rates), **fields)
            if self._log and time.monotonic() - self._last_log >= self.log_every:
                self._last_log = time.monotonic()
                task = self._progress.tasks[0]
                eta = f"{task.time_remaining:.0f} s" if task.time_remaining is not None else "-"
                logger.info(
                    "%d/%d problems, %d samples verified, pass@1 %s, pass@%d %s, ETA %s",
                    task.completed,
                    task.total,
                    fields["verified"],
                    fields["pass1"],
                    self.samples,
                    fields["passn"],
                    eta,
                )

    def _update(self, problem: str, records: Iterable[Mapping[str, Any]]) -> None:
        """Replace the problem's contribution to the running sums (O(samples) per call)."""
        statuses = self._statuses.setdefault(problem, {})
        self._verified -= len(statuses)
        old = self._rates.pop(problem, None)
        if old is not None:
            self._rate_sum -= old
            self._solved -= old > 0
        for record in records:
            statuses[record["sample"]] = record["status"]
        self._verified += len(statuses)
        usable = [s for s in statuses.values() if s != Status.ERROR.value]
        if len(statuses) == self.samples and usable:
            rate = sum(s == Status.PROVED.value for s in usable) / len(usable)
            self._rates[problem] = rate
            self._rate_sum += rate
            self._solved += rate > 0

    def _fields(self) -> dict[str, Any]:
        done = len(self._rates)
        return {
            "verified": self._verified,
            "n": self.samples,
            "pass1": f"{self._rate_sum / done:.3f}" if done else "-",
            "passn": f"{self._solved / done:.3f}" if done else "-",
        }

    def __enter__(self) -> EvalProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()
