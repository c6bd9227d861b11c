"""pass@k of a model on a problem set, with intervals, resumable; and side-by-side comparison of runs.

    python -m prover.evaluate --model PATH_OR_ID --dataset minif2f-test --samples 256 --k 1,8,32,128,256
    python -m prover.evaluate --config recipes/eval/synthetic_cpu.yaml --samples 64
    python -m prover.evaluate compare RUN_DIR RUN_DIR ... [--labels base,grpo] [--out compare.png]

Everything that can be wrong with the input (config, model, dataset, k, verifier setup) is checked
before the model is loaded, and reported in one line.
"""

from __future__ import annotations

import argparse
import logging
import sys
from contextlib import ExitStack
from pathlib import Path

from rich.logging import RichHandler

from prover import model_check
from prover.config import ConfigError, help_text, load_config, to_dict
from prover.eval.config import DEFAULT_TASK, EvalConfig
from prover.eval.records import RecordsError
from prover.eval.report import PLOT_FILE, make_console, on_common_problems, plot_passk, print_compare, print_run
from prover.eval.runner import EvalError, evaluate
from prover.eval.summary import Summary

logger = logging.getLogger("prover.evaluate")


class SetupError(RuntimeError):
    """The input names something that is not there or not usable; raised before any sampling."""


def make_parser() -> argparse.ArgumentParser:
    """Help for the evaluation options (parsed by prover.config.load_config) and the compare command."""
    parser = argparse.ArgumentParser(
        prog="python -m prover.evaluate",
        description=__doc__.split("\n\n")[0],
        epilog="options (from --config YAML, overridden by --section.field value):\n" + help_text(EvalConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", help="YAML file with EvalConfig fields")
    return parser


def make_compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prover.evaluate compare",
        description="Overlay several evaluation runs in one table and one plot.",
    )
    parser.add_argument("runs", nargs="+", help="run directories (each with a summary.json)")
    parser.add_argument("--labels", help="comma-separated names for the runs (default: directory names)")
    parser.add_argument("--out", default="runs/eval/compare.png", help="where the plot goes")
    parser.add_argument("--title", default="", help="plot title")
    parser.add_argument(
        "--all_problems",
        "--all-problems",
        action="store_true",
        help="show each run on its own problem set (default: on the problems all runs share)",
    )
    return parser


def check_model(model: str | None) -> None:
    """A model that cannot be found fails here, not after the problems and the verifier are set up."""
    if not model:
        raise SetupError("no model: pass --model PATH_OR_HUB_ID (or sampler.model in the config)")
    try:
        model_check.check_model(model)
    except model_check.ModelNotFound as exc:
        raise SetupError(str(exc)) from None


def run(config: EvalConfig) -> tuple[Summary, Path]:
    """Set up from ``config`` (failing early on bad input), evaluate, write summary and plot."""
    from prover.sampling import make_sampler
    from prover.sampling.base import SamplingParams
    from prover.tasks.base import make_task

    check_model(config.sampler.model)
    try:
        task = make_task(config.task)
        problems = task.load_problems()
    except (ValueError, FileNotFoundError, ConfigError) as exc:
        raise SetupError(f"task {config.task.name!r}, dataset {config.task.dataset!r}: {exc}") from exc
    if not problems:
        raise SetupError(f"dataset {config.task.dataset!r} holds no problems (after exclude/limit)")
    run_dir = config.resolved_run_dir()
    with ExitStack() as stack:
        try:
            verifier = stack.enter_context(task.make_verifier(config.verifier))
        except (ValueError, OSError, RuntimeError) as exc:  # the verifier's LeanSetupError is a RuntimeError
            raise SetupError(f"verifier: {exc}") from exc
        sampler = stack.enter_context(make_sampler(config.sampler))
        # Tasks whose completions end at a known marker say so in `stop` (not part of the Task interface)
        stop = config.stop if config.stop is not None else list(getattr(task, "stop", None) or [])
        params = SamplingParams(
            temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens, stop=stop
        )
        # what decides the samples and verdicts; exclude/limit only choose problems and may change
        task_identity = {k: v for k, v in to_dict(config.task).items() if k not in ("exclude", "limit")}
        identity = {
            "model": config.sampler.model,
            "task_config": task_identity,
            "verifier": {k: to_dict(config.verifier)[k] for k in ("allow_native", "axiom_allowlist", "timeout")},
        }
        summary = evaluate(
            task,
            sampler,
            verifier,
            problems,
            samples=config.samples,
            run_dir=run_dir,
            ks=config.k,
            sampling_params=params,
            seed=config.seed,
            chunk_size=config.chunk_size,
            error_retries=config.error_retries,
            bootstrap=config.bootstrap,
            confidence=config.confidence,
            identity=identity,
            config=config,
            lean_project=config.verifier.resolved_lean_project(),
            progress=config.progress,
        )
    if config.plot:
        plot_passk(
            {Path(config.sampler.model).name: summary},
            run_dir / PLOT_FILE,
            title=f"{_what(config)}: {summary.problems} problems, {config.samples} samples each",
        )
    return summary, run_dir


def _what(config: EvalConfig) -> str:
    return " ".join(x for x in (config.task.name, config.task.dataset) if x)


def compare(argv: list[str]) -> int:
    args = make_compare_parser().parse_args(argv)
    labels = args.labels.split(",") if args.labels else [Path(r).name for r in args.runs]
    if len(labels) != len(args.runs):
        raise SetupError(f"--labels names {len(labels)} runs, {len(args.runs)} were given")
    summaries = {label: Summary.load(run) for label, run in zip(labels, args.runs)}
    if not args.all_problems:
        summaries, note = on_common_problems(summaries)
        if note:
            logger.warning("%s (--all_problems: each run on its own set)", note)
    print_compare(summaries)
    path = plot_passk(summaries, args.out, title=args.title)
    print(f"plot: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # rich's handler prints log lines above the live progress bar instead of through it
    logging.basicConfig(
        level=logging.INFO,
        format="%(name)s: %(message)s",
        datefmt="[%X]",
        handlers=[RichHandler(console=make_console(stderr=True), show_path=False)],
    )
    try:
        if argv[:1] == ["compare"]:
            return compare(argv[1:])
        if any(a in ("-h", "--help") for a in argv):
            make_parser().print_help()
            return 0
        config = load_config(EvalConfig, argv, defaults={"task": {"name": DEFAULT_TASK}})
        summary, run_dir = run(config)
    except (ConfigError, SetupError, EvalError, RecordsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_run(summary, title=f"{config.sampler.model} on {_what(config)}")
    print(f"results: {run_dir}" + (f"   plot: {run_dir / PLOT_FILE}" if config.plot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
