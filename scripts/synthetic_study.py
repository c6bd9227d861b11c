"""The paper's comparison on the synthetic task: does GRPO sharpen, and does the unlikeliness reward stop it?

Variants, each trained from the same cached base model on the same sample budget (generation
batches) for every seed: plain GRPO, GRPO + unlikeliness, and both with 2 updates per generated
batch (num_iterations = 2). Every model, the base included, is evaluated by pass@k for k = 1..256
on the test theorems, overall and per kind (easy / rare); the trainer's rank-bias probe gives the
uplift rate by initial likelihood rank at the end of each run.

    python scripts/synthetic_study.py                        # ~45-60 min on 2 CPU cores
    python scripts/synthetic_study.py --seeds 0 --generation_steps 100 --eval_samples 64   # a quick look
    python scripts/synthetic_study.py --report_only          # redo table and plots from finished runs

Rerunning resumes: a finished (variant, seed) run is skipped, an interrupted one continues from
its last checkpoint or from its partial evaluation. Outputs in ``out_dir``: results.json,
table.md, passk.png (pass@k against k: all / easy / rare theorems), uplift.png (uplift rate
against initial rank per variant), and one directory per run.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prover.config import ConfigError, help_text, load_config
from prover.plotting import pyplot, save_figure
from prover.tasks.base import TaskConfig

logger = logging.getLogger("synthetic_study")

# GRPOConfig overrides that define each variant; everything else is shared.
VARIANTS: dict[str, dict[str, Any]] = {
    "grpo": {"unlikeliness": False, "num_iterations": 1},
    "grpo+unlikeliness": {"unlikeliness": True, "num_iterations": 1},
    "grpo-2updates": {"unlikeliness": False, "num_iterations": 2},
    "grpo+unlikeliness-2updates": {"unlikeliness": True, "num_iterations": 2},
}
BASE = "base"
KINDS = ("all", "easy", "rare")


@dataclass
class StudyConfig:
    out_dir: str = field(
        default="runs/synthetic-study", metadata={"help": "where runs, table and plots go; rerunning resumes here"}
    )
    seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2],
        metadata={"help": "training seeds per variant (also the evaluation's sampling seed)"},
    )
    variants: list[str] = field(
        default_factory=lambda: list(VARIANTS), metadata={"help": f"variants to run, from {list(VARIANTS)}"}
    )
    generation_steps: int = field(
        default=400,
        metadata={
            "help": "generation batches per run, the same budget for every variant; optimizer steps = this x num_iterations"
        },
    )
    theorems_per_step: int = field(default=8, metadata={"help": "theorems per generation batch"})
    num_generations: int = field(
        default=16, metadata={"help": "G: proofs sampled per theorem (8 x 16 = 128 proofs per batch)"}
    )
    learning_rate: float = field(
        default=2e-4, metadata={"help": "AdamW learning rate (the tiny model needs far more than a 7B one)"}
    )
    beta: float = field(
        default=0.0, metadata={"help": "KL coefficient to the base model (0: none, so sharpening is free to show)"}
    )
    grpo: dict[str, Any] = field(
        default_factory=dict,
        metadata={"help": "further GRPOConfig fields shared by all variants, e.g. {beta_rank: 0.5}"},
    )
    eval_samples: int = field(default=256, metadata={"help": "proofs per test theorem (the largest k of pass@k)"})
    eval_batch_size: int = field(default=256, metadata={"help": "sequences per generate call while evaluating"})
    rank_bias_problems: int = field(
        default=32, metadata={"help": "probe theorems for the uplift diagnostic (the first of the probe set)"}
    )
    rank_bias_samples: int = field(default=16, metadata={"help": "proofs per probe theorem drawn from the base model"})
    threads: int = field(
        default=1, metadata={"help": "torch threads (1 is fastest for this model size on a shared CPU)"}
    )
    report_only: bool = field(default=False, metadata={"help": "only aggregate finished runs into the table and plots"})
    task: TaskConfig = field(
        default_factory=lambda: TaskConfig(name="synthetic", dataset="train"),
        metadata={"help": "the synthetic task (task.options change theorems and base model)"},
    )

    def __post_init__(self):
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
        if self.task.name != "synthetic":
            raise ValueError(f"the study runs on the synthetic task, got task.name={self.task.name!r}")
        if not self.seeds:
            raise ValueError("seeds is empty: give at least one")


def make_parser():
    import argparse

    parser = argparse.ArgumentParser(
        prog="python scripts/synthetic_study.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="options:\n" + help_text(StudyConfig),
    )
    parser.add_argument("--config", help="YAML with StudyConfig fields; --field value overrides it")
    return parser


def ks_for(samples: int) -> list[int]:
    from prover.eval.passk import default_ks

    return default_ks(samples)


# ---- running ---------------------------------------------------------------------------------------


def train_config(config: StudyConfig, variant: str, seed: int, model: str, run_dir: Path):
    """The trainer's config for one run: the shared settings plus the variant's."""
    from prover.train import TrainConfig, machine_defaults

    overrides = VARIANTS[variant]
    max_steps = config.generation_steps * overrides["num_iterations"]
    grpo = {
        **machine_defaults(),
        "output_dir": str(run_dir),
        "use_cpu": True,
        "bf16": False,
        "report_to": "none",
        "num_generations": config.num_generations,
        "per_device_train_batch_size": config.theorems_per_step * config.num_generations,
        "max_completion_length": 2 * _task(config).options.max_budget + 2,  # op value pairs, "qed", EOS
        "learning_rate": config.learning_rate,
        "beta": config.beta,
        "max_steps": max_steps,
        "save_steps": max(1, max_steps // 4),
        "save_total_limit": 1,
        "logging_steps": 20,
        "seed": seed,
        **config.grpo,
        **overrides,
    }
    return load_config(
        TrainConfig,
        [],
        defaults={
            "model": model,
            "task": _task_dict(config, "train"),
            "grpo": grpo,
            "eval": {"enabled": False},
            "rank_bias": {
                "enabled": True,
                "dataset": "probe",
                "problems": config.rank_bias_problems,
                "samples": config.rank_bias_samples,
                "every": max(1, max_steps // 4),
            },
        },
    )


def _task_dict(config: StudyConfig, dataset: str) -> dict[str, Any]:
    from prover.config import to_dict

    return {**to_dict(config.task), "dataset": dataset}


def _task(config: StudyConfig):
    from prover.tasks.base import make_task

    return make_task(config.task)


def evaluate(config: StudyConfig, model: str, run_dir: Path, seed: int):
    """pass@k on the test theorems (resumes a partial evaluation in ``run_dir``)."""
    from prover.config import from_dict
    from prover.eval.config import EvalConfig
    from prover.evaluate import run

    eval_config = from_dict(
        EvalConfig,
        {
            "model": model,
            "samples": config.eval_samples,
            "k": ks_for(config.eval_samples),
            "seed": seed,
            "temperature": 1.0,
            "top_p": 1.0,
            "max_tokens": 2 * _task(config).options.max_budget + 2,
            "run_dir": str(run_dir),
            "plot": False,
            "task": _task_dict(config, "test"),
            "sampler": {"backend": "hf", "device": "cpu", "batch_size": config.eval_batch_size},
        },
        "study eval",
    )
    summary, _ = run(eval_config)
    return summary


def run_all(config: StudyConfig, base_model: str) -> None:
    """Evaluate the base once, then train and evaluate every (variant, seed) not finished yet."""
    from prover.train import run as train_run

    out = Path(config.out_dir)
    if not (out / BASE / "eval" / "summary.json").is_file():
        print(f"pass@k of the base model ({base_model})")
        evaluate(config, base_model, out / BASE / "eval", config.seeds[0])
    runs = [(v, s) for s in config.seeds for v in config.variants]  # seed-major: partial results cover every variant
    for i, (variant, seed) in enumerate(runs, 1):
        run_dir = out / variant / f"seed{seed}"
        if (run_dir / "eval" / "summary.json").is_file():
            print(f"[{i}/{len(runs)}] {variant} seed {seed}: done, skipped")
            continue
        print(f"[{i}/{len(runs)}] {variant} seed {seed} -> {run_dir}")
        final = run_dir / "final"
        if not (final / "config.json").is_file():
            train_run(train_config(config, variant, seed, base_model, run_dir))
        evaluate(config, str(final), run_dir / "eval", seed)


# ---- aggregating -----------------------------------------------------------------------------------


def _per_problem(summary, names: list[str], ks: list[int]) -> np.ndarray:
    """(problems, ks) pass@k of one run, problems in ``names`` order."""
    from prover.eval.passk import pass_at_k_matrix

    missing = [n for n in names if n not in summary.per_problem]
    if missing:
        raise ValueError(
            f"an evaluation lacks {len(missing)} test theorems (e.g. {missing[0]}): was it run with other task options?"
        )
    return pass_at_k_matrix([(summary.per_problem[n].samples, summary.per_problem[n].correct) for n in names], ks)


def aggregate(config: StudyConfig) -> dict[str, Any]:
    """pass@k per label and kind: the mean over seeds of each theorem's pass@k, averaged over theorems,
    with a bootstrap interval over theorems, and the spread of the per-seed means."""
    from prover.eval.passk import bootstrap_means
    from prover.eval.summary import Summary

    out = Path(config.out_dir)
    problems = _task(config).load_problems("test")
    names = [p.name for p in problems]
    kinds = np.array([p.extra["kind"] for p in problems])
    ks = ks_for(config.eval_samples)
    labels = {BASE: [out / BASE / "eval"]}
    labels.update({v: [out / v / f"seed{s}" / "eval" for s in config.seeds] for v in config.variants})
    results: dict[str, Any] = {"ks": ks, "labels": {}}
    for label, dirs in labels.items():
        done = [d for d in dirs if (d / "summary.json").is_file()]
        if not done:
            continue
        per_seed = np.stack([_per_problem(Summary.load(d), names, ks) for d in done])  # (seeds, problems, ks)
        entry: dict[str, Any] = {"runs": len(done)}
        for kind in KINDS:
            mask = np.ones(len(names), bool) if kind == "all" else kinds == kind
            intervals = bootstrap_means(per_seed[:, mask].mean(0))
            seed_means = per_seed[:, mask].mean(1)  # (seeds, ks)
            entry[kind] = {
                str(k): {
                    "mean": iv.mean,
                    "low": iv.low,
                    "high": iv.high,
                    "seed_min": float(seed_means[:, j].min()),
                    "seed_max": float(seed_means[:, j].max()),
                    "problems": iv.problems,
                }
                for j, (k, iv) in enumerate(zip(ks, intervals))
            }
        entry["uplift"] = uplift(out / label, config.seeds) if label != BASE else None
        results["labels"][label] = entry
    results["checks"] = pattern_checks(results)
    return results


def uplift(variant_dir: Path, seeds: list[int], bins: int = 4) -> dict[str, Any] | None:
    """The final rank-bias result of each seed, pooled: uplift rate per initial-rank bin."""
    from prover.rl.rank_bias import RankBiasResult

    risen, counts = None, None
    for seed in seeds:
        path = variant_dir / f"seed{seed}" / "rank_bias.jsonl"
        if not path.is_file():
            continue
        lines = [line for line in path.read_text().splitlines() if line]
        if not lines:
            continue
        last = RankBiasResult(**json.loads(lines[-1]))
        r = np.array([(rate or 0.0) * c for rate, c in zip(last.rates, last.counts)])
        c = np.array(last.counts, dtype=float)
        risen, counts = (r, c) if risen is None else (risen + r, counts + c)
    if risen is None:
        return None
    edges = np.linspace(0, len(counts), bins + 1).astype(int)
    rates = [
        float(risen[a:b].sum() / counts[a:b].sum()) if counts[a:b].sum() else None
        for a, b in zip(edges[:-1], edges[1:])
    ]
    return {"rates": rates, "counts": [int(counts[a:b].sum()) for a, b in zip(edges[:-1], edges[1:])]}


def pattern_checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The paper's pattern, one claim per line, each with the numbers that decide it."""
    labels, ks = results["labels"], results["ks"]
    top, first = str(ks[-1]), str(ks[0])

    def p(label: str, k: str, kind: str = "all") -> float | None:
        return labels[label][kind][k]["mean"] if label in labels else None

    def slope(label: str) -> float | None:
        u = labels.get(label, {}).get("uplift")
        if not u or u["rates"][0] is None or u["rates"][-1] is None:
            return None
        return u["rates"][-1] - u["rates"][0]

    checks = []

    def claim(text: str, values: dict[str, float | None], holds) -> None:
        if all(v is not None for v in values.values()):
            checks.append({"claim": text, "holds": bool(holds(**values)), "values": values})

    for g, u in (("grpo", "grpo+unlikeliness"), ("grpo-2updates", "grpo+unlikeliness-2updates")):
        claim(
            f"{g} raises pass@{first} over the base",
            {"base": p(BASE, first), g: p(g, first)},
            lambda **v: v[g] > v["base"],
        )
        claim(
            f"{g} pass@{top} falls toward or below the base (below the base's upper interval)",
            {
                "base": p(BASE, top),
                "base_high": labels.get(BASE, {}).get("all", {}).get(top, {}).get("high"),
                g: p(g, top),
            },
            lambda **v: v[g] <= v["base_high"],
        )
        claim(
            f"{u} keeps pass@{top} at or above the base (within its interval) and above {g}",
            {
                "base": p(BASE, top),
                "base_low": labels.get(BASE, {}).get("all", {}).get(top, {}).get("low"),
                g: p(g, top),
                u: p(u, top),
            },
            lambda **v: v[u] >= v["base_low"] and v[u] > v[g],
        )
        claim(
            f"{u} keeps more of the rare theorems at pass@{top} than {g}",
            {g: p(g, top, "rare"), u: p(u, top, "rare")},
            lambda **v: v[u] > v[g],
        )
        claim(
            f"uplift under {g} rises with initial rank and is flatter under {u} (top - bottom quarter)",
            {g: slope(g), u: slope(u)},
            lambda **v: v[g] > 0 and v[u] < v[g],
        )
    return checks


# ---- reporting -------------------------------------------------------------------------------------


def _fmt(cell: dict[str, float]) -> str:
    return f"{100 * cell['mean']:.1f} [{100 * cell['low']:.1f}, {100 * cell['high']:.1f}]"


def write_table(results: dict[str, Any], path: Path, show_ks=(1, 16, 64, 256)) -> str:
    """Markdown table: pass@k (mean over seeds, 95% bootstrap interval over theorems) per label and kind."""
    ks = [str(k) for k in results["ks"] if k in show_ks or k == results["ks"][-1]]
    ks = list(dict.fromkeys(ks))
    head = (
        "| model | runs | theorems | "
        + " | ".join(f"pass@{k}" for k in ks)
        + " | uplift by rank quarter (low to high) |"
    )
    lines = [head, "|" + "---|" * (len(ks) + 4)]
    for kind in KINDS:
        for label, entry in results["labels"].items():
            u = entry.get("uplift")
            up = " / ".join("-" if r is None else f"{100 * r:.0f}%" for r in u["rates"]) if u else ""
            lines.append(
                f"| {label} | {entry['runs']} | {kind} ({entry[kind][ks[0]]['problems']}) | "
                + " | ".join(_fmt(entry[kind][k]) for k in ks)
                + f" | {up if kind == 'all' else ''} |"
            )
    lines.append("")
    for c in results["checks"]:
        values = ", ".join(f"{k}={100 * v:.1f}" for k, v in c["values"].items())
        lines.append(f"- [{'x' if c['holds'] else ' '}] {c['claim']} ({values})")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def plot_passk(results: dict[str, Any], path: Path) -> Path:
    """pass@k against k, one panel per theorem kind, one line per label with its interval as a band."""
    plt = pyplot()

    ks = results["ks"]
    fig, axes = plt.subplots(1, len(KINDS), figsize=(15, 4.4), dpi=110)
    for ax, kind in zip(axes, KINDS):
        for label, entry in results["labels"].items():
            cells = [entry[kind][str(k)] for k in ks]
            (line,) = ax.plot(
                ks,
                [100 * c["mean"] for c in cells],
                marker="o",
                markersize=3,
                label=f"{label} ({entry['runs']} run{'s' if entry['runs'] > 1 else ''})",
                linestyle="--" if label == BASE else "-",
                color="black" if label == BASE else None,
            )
            ax.fill_between(
                ks,
                [100 * c["low"] for c in cells],
                [100 * c["high"] for c in cells],
                color=line.get_color(),
                alpha=0.12,
                linewidth=0,
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("k")
        ax.set_title(f"{kind} test theorems ({next(iter(results['labels'].values()))[kind][str(ks[0])]['problems']})")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("pass@k (%), mean over seeds, 95% interval over theorems")
    axes[-1].legend(loc="lower right", fontsize="small")
    return save_figure(fig, path)


def plot_uplift(results: dict[str, Any], path: Path) -> Path | None:
    """Uplift rate by initial likelihood-rank quarter of the probe's correct proofs, per variant."""
    plt = pyplot()

    entries = {label: e["uplift"] for label, e in results["labels"].items() if e.get("uplift")}
    if not entries:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for label, u in entries.items():
        xs = [i + 1 for i, r in enumerate(u["rates"]) if r is not None]
        ax.plot(xs, [100 * r for r in u["rates"] if r is not None], marker="o", label=label)
    ax.set_xticks([1, 2, 3, 4], ["least likely", "2nd", "3rd", "most likely"])
    ax.set_xlabel("initial likelihood rank quarter of the correct proof in its group")
    ax.set_ylabel("uplift rate (% whose log-prob rose)")
    ax.set_ylim(-5, 105)
    ax.set_title("Rank bias at the end of training (probe theorems, seeds pooled)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def report(config: StudyConfig) -> None:
    out = Path(config.out_dir)
    results = aggregate(config)
    if not results["labels"]:
        print(f"no finished runs under {out}")
        return
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(write_table(results, out / "table.md"))
    print(f"table: {out / 'table.md'}\npass@k plot: {plot_passk(results, out / 'passk.png')}")
    uplift_path = plot_uplift(results, out / "uplift.png")
    if uplift_path:
        print(f"uplift plot: {uplift_path}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        make_parser().print_help()
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    try:
        config = load_config(StudyConfig, argv)
    except ConfigError as exc:
        print(f"synthetic_study: {exc}", file=sys.stderr)
        return 2
    import torch

    from prover.runinfo import write_run_info

    torch.set_num_threads(config.threads)
    if not config.report_only:
        task = _task(config)
        base_model = str(task.ensure_base_model())
        write_run_info(config.out_dir, config, seeds={"seeds": config.seeds}, extra={"base_model": base_model})
        run_all(config, base_model)
    report(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
