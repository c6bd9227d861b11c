"""Tables (rich) and plots (matplotlib) of one run or several runs side by side."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

from prover.eval.passk import Interval
from prover.eval.summary import Summary, paired_difference, restrict
from prover.plotting import pyplot, save_figure

logger = logging.getLogger(__name__)

PLOT_FILE = "passk.png"


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}"


def _cell(summary: Summary, k: int) -> str:
    iv = summary.pass_at_k.get(k)
    if iv is None:
        return "-"
    return f"{_pct(iv.mean)} [{_pct(iv.low)}, {_pct(iv.high)}]"


def run_table(summary: Summary) -> Table:
    """pass@k per k with its interval, and the run's other figures underneath."""
    conf = f"{100 * summary.confidence:.0f}%"
    table = Table(caption=f"pass@k in %, {conf} bootstrap interval over problems ({summary.bootstrap} resamples)")
    table.add_column("k", justify="right")
    table.add_column("pass@k", justify="right")
    table.add_column(f"{conf} interval", justify="right")
    table.add_column("problems", justify="right")
    for k in summary.ks:
        iv = summary.pass_at_k[k]
        table.add_row(str(k), _pct(iv.mean), f"[{_pct(iv.low)}, {_pct(iv.high)}]", str(iv.problems))
    return table


def facts_table(summary: Summary) -> Table:
    """Solved problems, distinct proofs, lengths, timing and checker failures."""
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    rows = [
        ("problems solved", f"{summary.solved} / {summary.problems} ({_pct(summary.solved_fraction)}%)"),
        ("distinct correct proofs / problem", f"{summary.distinct_correct_mean:.2f}"),
        (
            "mean completion tokens (all / correct)",
            f"{_fmt(summary.mean_tokens)} / {_fmt(summary.mean_correct_tokens)}",
        ),
        ("verdicts", ", ".join(f"{k} {v}" for k, v in summary.statuses.items()) or "-"),
        ("sampling / checking time (s)", f"{summary.sampling_seconds:.1f} / {summary.verify_seconds:.1f}"),
    ]
    if summary.errors or summary.incomplete:
        rows.append(
            (
                "[red]checker failures",
                f"{summary.errors} samples left out; {len(summary.incomplete)} problems incomplete",
            )
        )
    for name, value in rows:
        table.add_row(name, value)
    return table


def _points(d: Interval | None) -> str:
    if d is None or not d.problems:
        return "-"
    return f"{100 * d.mean:+.1f} [{100 * d.low:+.1f}, {100 * d.high:+.1f}]"


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}"


def compare_table(summaries: Mapping[str, Summary]) -> Table:
    """One row per k, one column per run; then each later run minus the first, on the problems both
    ran, with a paired bootstrap interval (it removes the problem-difficulty spread that dominates
    each run's own interval, so runs whose bands overlap can still differ clearly)."""
    (base_label, base), *others = summaries.items()
    ks = sorted({k for s in summaries.values() for k in s.ks})
    diffs = {label: paired_difference(base, s, ks, base.bootstrap, base.confidence) for label, s in others}
    conf = f"{100 * base.confidence:.0f}%"
    table = Table(
        caption=f"pass@k in % [{conf} bootstrap interval over problems]; Δ: points above {base_label} "
        f"on the problems both ran [{conf} paired bootstrap interval]"
    )
    table.add_column("k", justify="right")
    for label, s in summaries.items():
        table.add_column(f"{label}\n({s.problems} problems)", justify="right")
    for label, diff in diffs.items():
        common = max((d.problems for d in diff.values()), default=0)
        table.add_column(f"Δ {label}\n({common} common)", justify="right")
    for k in ks:
        table.add_row(
            str(k), *(_cell(s, k) for s in summaries.values()), *(_points(diff.get(k)) for diff in diffs.values())
        )
    table.add_row(
        "solved", *(f"{s.solved}/{s.problems}" for s in summaries.values()), *("" for _ in diffs), end_section=True
    )
    return table


def plot_passk(summaries: Mapping[str, Summary], path: str | Path, title: str = "") -> Path:
    """pass@k against k (log-2 x axis), one line per run with its interval as a band."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, s in summaries.items():
        ks = [k for k in s.ks if s.pass_at_k[k].problems > 0]
        mean = [100 * s.pass_at_k[k].mean for k in ks]
        (line,) = ax.plot(ks, mean, marker="o", markersize=3, label=label)
        ax.fill_between(
            ks,
            [100 * s.pass_at_k[k].low for k in ks],
            [100 * s.pass_at_k[k].high for k in ks],
            color=line.get_color(),
            alpha=0.2,
            linewidth=0,
        )
    ax.set_xscale("log", base=2)
    ticks = sorted({k for s in summaries.values() for k in s.ks})
    ax.set_xticks(ticks, [str(k) for k in ticks])
    ax.minorticks_off()
    ax.set_ylim(bottom=0)
    ax.set_xlabel("k (samples per problem)")
    ax.set_ylabel("pass@k (%)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    return save_figure(fig, path)


def on_common_problems(summaries: Mapping[str, Summary]) -> tuple[dict[str, Summary], str | None]:
    """The runs restricted to the problems all of them ran, and a note when that dropped any."""
    sets = [set(s.per_problem) for s in summaries.values()]
    common = set.intersection(*sets) if sets else set()
    if all(names == common for names in sets):
        return dict(summaries), None
    sizes = ", ".join(f"{label}: {len(s.per_problem)}" for label, s in summaries.items())
    note = f"the runs cover different problem sets ({sizes}); shown on the {len(common)} problems all of them ran"
    first = next(iter(summaries.values()))
    names = [name for name in first.per_problem if name in common]
    return {label: restrict(s, names) for label, s in summaries.items()}, note


def make_console(stderr: bool = False) -> Console:
    """The terminal's width on a terminal; elsewhere (a log file, a pipe) wide enough not to fold tables."""
    console = Console(stderr=stderr)
    return console if console.is_terminal else Console(stderr=stderr, width=160)


def print_run(summary: Summary, title: str = "", console: Console | None = None) -> None:
    console = console or make_console()
    if title:
        console.print(f"[bold]{title}", soft_wrap=True)  # a long model path stays on one line
    console.print(run_table(summary))
    console.print(facts_table(summary))


def print_compare(summaries: Mapping[str, Summary], console: Console | None = None) -> None:
    console = console or make_console()
    console.print(compare_table(summaries))
