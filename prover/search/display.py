"""How a search looks on a terminal: the live progress panel, the proof found, the failure summary;
and ``run_search``, which runs a search in a worker thread so that Ctrl-C only stops it."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from prover.data.problem import Problem
from prover.search.engine import SearchResult
from prover.search.progress import SearchProgress

logger = logging.getLogger(__name__)

_WHY = {
    "exhausted": "budget spent",
    "timeout": "time limit reached",
    "cancelled": "stopped by the user",
}


def verdict_counts(progress: SearchProgress) -> str:
    return ", ".join(f"{n} {status}" for status, n in sorted(progress.statuses.items())) or "none yet"


def _with_bar(text: str, completed: float, total: float) -> RenderableType:
    cell = Table.grid(padding=(0, 2))
    cell.add_column(width=18, no_wrap=True)
    cell.add_column()
    cell.add_row(text, ProgressBar(total=max(total, 1e-9), completed=min(completed, total), width=24))
    return cell


def render_progress(p: SearchProgress, top_errors: int = 5) -> RenderableType:
    """The live panel: samples, verdicts, distinct proofs, common errors, time against the limit."""
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row("budget", _with_bar(f"{p.used}/{p.budget} {p.budget_unit}", p.used, p.budget))
    if p.time_limit:
        grid.add_row("time", _with_bar(f"{p.elapsed:.1f}/{p.time_limit:g} s", p.elapsed, p.time_limit))
    else:
        grid.add_row("time", f"{p.elapsed:.1f} s")
    grid.add_row("samples", f"{p.samples} drawn, {p.malformed} malformed")
    if p.budget_unit == "expansions":
        grid.add_row("tactics", f"{p.tactics} run, {p.frontier} states waiting")
    grid.add_row("verified", f"{p.verified} of {p.distinct} distinct proofs: {verdict_counts(p)}")
    parts: list[RenderableType] = [grid]
    if p.errors:
        errors = Table(title="most common errors", title_justify="left", show_header=False, box=None, padding=(0, 1))
        errors.add_column(justify="right", style="yellow")
        errors.add_column(overflow="ellipsis", no_wrap=True)
        for kind, n in p.errors.most_common(top_errors):
            errors.add_row(str(n), Text(kind))  # Text: Lean's `[h]` is not rich markup
        parts.append(errors)
    title = f"{p.strategy} search · round {p.rounds} · {p.phase}"
    return Panel(Group(*parts), title=title, title_align="left", border_style="cyan")


def render_proof(result: SearchResult) -> RenderableType:
    p = result.progress
    title = f"proved in {p.elapsed:.1f} s after {p.samples} samples ({p.distinct} distinct proofs checked)"
    return Panel(
        Syntax(result.full_text.rstrip(), "lean4", word_wrap=True),
        title=title,
        title_align="left",
        border_style="green",
    )


def summary_lines(result: SearchResult) -> list[str]:
    """What failed, in plain text: why the search stopped, what was tried, what Lean said most."""
    p = result.progress
    why = _WHY.get(result.outcome, result.outcome)
    if result.note:
        why += f" ({result.note})"
    lines = [
        f"not proved: {why} after {p.elapsed:.1f} s; {p.used}/{p.budget} {p.budget_unit} used",
        f"  {p.samples} samples, {p.malformed} malformed, {p.distinct} distinct proofs checked: {verdict_counts(p)}",
    ]
    if p.errors:
        lines.append("  most common errors:")
        lines += [f"    {n:>4} x {kind}" for kind, n in p.errors.most_common(5)]
    return lines


def run_search(session, problem: Problem, console: Console, live: bool) -> SearchResult:
    """Run ``session.search`` in a worker thread under a live display; Ctrl-C asks it to stop.

    The worker stops at its next step (a sampling call or a verification batch is not cut short),
    so the model and the verifier are never left half-used; further Ctrl-Cs change nothing meanwhile.
    """
    cancel, done = threading.Event(), threading.Event()
    progress = SearchProgress()
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["result"] = session.search(problem, cancel, progress)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="search", daemon=True).start()
    if live:
        display = Live(
            get_renderable=lambda: render_progress(progress.snapshot()),
            console=console,
            refresh_per_second=4,
            transient=True,
        )
    else:
        display = _LogProgress(progress)
    with _sigint_cancels(cancel):
        with display:
            while not done.wait(0.1) and not cancel.is_set():
                pass
        if not done.is_set():
            with console.status("stopping the search after its current step"):
                done.wait()
    if "error" in box:
        raise box["error"]
    return box["result"]


@contextlib.contextmanager
def _sigint_cancels(cancel: threading.Event):
    """Ctrl-C sets ``cancel`` instead of raising KeyboardInterrupt in the waiting thread: an exception
    raised at an arbitrary point there (say, inside an Event's lock) could leave a lock the worker
    needs held, and the search would never return. Further Ctrl-Cs only set it again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: cancel.set())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


class _LogProgress(threading.Thread):
    """Without a terminal: a log line per round."""

    def __init__(self, progress: SearchProgress):
        super().__init__(daemon=True, name="search-log")
        self._progress = progress
        self._done = threading.Event()

    def run(self) -> None:
        last = -1
        while not self._done.wait(0.5):
            p = self._progress.snapshot()
            if p.rounds != last:
                last = p.rounds
                logger.info(
                    "round %d: %d/%d %s, %d verified (%s), %.1f s",
                    p.rounds,
                    p.used,
                    p.budget,
                    p.budget_unit,
                    p.verified,
                    verdict_counts(p),
                    p.elapsed,
                )

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self.join()
