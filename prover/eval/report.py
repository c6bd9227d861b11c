"""Tables (rich) and plots (matplotlib) of one run or several runs side by side."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

from prover.eval.passk import Interval
from prover.eval.summary import Summary, paired_difference

logger = logging.getLogger(__name__)

PLOT_FILE = "passk.png"


def _pct(x: float | None) -> str:
    return "-" if x is None or x != x else f"{100 * x:.1f}"


def _cell(summary: Summary, k: int) -> str:
    iv = summary.pass_at_k.get(k)
    if iv is None:
        return "-"
    return f"{_pct(iv.mean)} [{_pct(iv.low)}, {_pct(iv.high)}]"


def run_table(summary: Summary, title: str = "") -> Table:
    """pass@k per k with its interval, and the run's other figures underneath."""
    conf = f"{100 * summary.confidence:.0f}%"
    table = Table(title=title or None, caption=f"pass@k in %, {conf} bootstrap interval over problems "
                                               f"({summary.bootstrap} resamples)")
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
        ("mean completion tokens (all / correct)",
         f"{_fmt(summary.mean_tokens)} / {_fmt(summary.mean_correct_tokens)}"),
        ("verdicts", ", ".join(f"{k} {v}" for k, v in summary.statuses.items()) or "-"),
        ("sampling / checking time (s)", f"{summary.sampling_seconds:.1f} / {summary.verify_seconds:.1f}"),
    ]
    if summary.errors or summary.incomplete:
        rows.append(("[red]checker failures", f"{summary.errors} samples left out; "
                                              f"{len(summary.incomplete)} problems incomplete"))
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
    """One row per run, one column per k (the union of the runs' k)."""
    ks = sorted({k for s in summaries.values() for k in s.ks})
    table = Table(caption="pass@k in % [bootstrap interval over problems]")
    table.add_column("run")
    table.add_column("problems", justify="right")
    for k in ks:
        table.add_column(f"pass@{k}", justify="right")
    table.add_column("solved", justify="right")
    for label, s in summaries.items():
        table.add_row(label, str(s.problems), *(_cell(s, k) for k in ks), str(s.solved))
    return table


def difference_table(summaries: Mapping[str, Summary]) -> Table | None:
    """Each run minus the first, per k, on their common problems, with a paired bootstrap interval."""
    if len(summaries) < 2:
        return None
    (base_label, base), *others = summaries.items()
    ks = sorted({k for s in summaries.values() for k in s.ks})
    table = Table(caption=f"pass@k minus {base_label}'s, in points [paired bootstrap interval over common problems]")
    table.add_column("run")
    table.add_column("common problems", justify="right")
    for k in ks:
        table.add_column(f"Δpass@{k}", justify="right")
    for label, summary in others:
        diff = paired_difference(base, summary, ks, base.bootstrap, base.confidence)
        common = next(iter(diff.values())).problems if diff else 0
        table.add_row(label, str(common), *(_points(diff.get(k)) for k in ks))
    return table


def plot_passk(summaries: Mapping[str, Summary], path: str | Path, title: str = "") -> Path:
    """pass@k against k (log-2 x axis), one line per run with its interval as a band."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, s in summaries.items():
        ks = [k for k in s.ks if s.pass_at_k[k].problems > 0]
        mean = [100 * s.pass_at_k[k].mean for k in ks]
        line, = ax.plot(ks, mean, marker="o", markersize=3, label=label)
        ax.fill_between(ks, [100 * s.pass_at_k[k].low for k in ks], [100 * s.pass_at_k[k].high for k in ks],
                        color=line.get_color(), alpha=0.2, linewidth=0)
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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def problem_set_warning(summaries: Mapping[str, Summary]) -> str | None:
    """Runs on different problem sets are not comparable number for number: say so."""
    sets = {label: frozenset(s.per_problem) for label, s in summaries.items()}
    first = next(iter(sets.values()), frozenset())
    if all(names == first for names in sets.values()):
        return None
    sizes = ", ".join(f"{label}: {len(names)}" for label, names in sets.items())
    return f"the runs cover different problem sets ({sizes} problems); compare with care"


def print_run(summary: Summary, title: str = "", console: Console | None = None) -> None:
    console = console or Console()
    console.print(run_table(summary, title))
    console.print(facts_table(summary))


def print_compare(summaries: Mapping[str, Summary], console: Console | None = None) -> None:
    console = console or Console()
    console.print(compare_table(summaries))
    differences = difference_table(summaries)
    if differences is not None:
        console.print(differences)
    warning = problem_set_warning(summaries)
    if warning:
        console.print(f"[yellow]warning:[/] {warning}")
