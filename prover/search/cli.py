"""``python -m prover.search``: prove one theorem and print the proof, or open an interactive session."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from prover.config import ConfigError, help_text, load_config
from prover.model_check import ModelNotFound, check_model
from prover.runinfo import write_run_info
from prover.search.config import SearchConfig
from prover.search.display import render_proof, run_search, summary_lines
from prover.search.engine import SearchError, StatementError
from prover.search.session import SearchSession
from prover.verifier.errors import LeanSetupError, VerifierError

logger = logging.getLogger("prover.search")

EXAMPLES = """\
examples:
  python -m prover.search --model PATH --theorem 'theorem t (x : ℕ) (h : 2 * x = 4) : x = 2 := by'
  python -m prover.search --model PATH --dataset minif2f-test --name mathd_algebra_478 --json
  python -m prover.search --model PATH --task synthetic          (interactive: paste statements)

exit status: 0 proved, 1 not proved (the summary says why), 2 bad input or settings

all settings (--config FILE.yaml sets them; --section.key VALUE overrides):
"""

# Short flags for keys inside sections; every other setting is --key or --section.key.
_SHORT = {"task": "task.name", "model": "sampler.model", "dataset": "task.dataset"}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m prover.search",
        description="Search for a Lean proof of one theorem with a policy model.",
        epilog=EXAMPLES + help_text(SearchConfig),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--config", help="YAML file of settings (the keys below)")
    parser.add_argument("--task", help="task name: lean (default) or synthetic (= --task.name)")
    parser.add_argument("--model", help="policy model path or hub id (= --sampler.model)")
    parser.add_argument("--dataset", help="problem set to take --name from (= --task.dataset)")
    parser.add_argument("--log-level", default="INFO", help="logging level on stderr (default: INFO)")
    return parser


def parse_config(argv: list[str] | None) -> tuple[SearchConfig, argparse.Namespace]:
    """Short flags and ``--config`` through argparse, everything else through ``load_config``."""
    parser = make_parser()
    args, rest = parser.parse_known_args(argv)
    overrides = [f"--{_SHORT[k]}={v}" for k, v in vars(args).items() if k in _SHORT and v is not None]
    try:
        # A partly overridden section is rebuilt from its class defaults (TaskConfig says synthetic):
        # the search's own default task is restated here.
        config = load_config(
            SearchConfig,
            ([f"--config={args.config}"] if args.config else []) + rest + overrides,
            defaults={"task": {"name": "lean"}},
        )
    except ConfigError as exc:  # one line, without argparse's usage block above it
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    return config, args


def main(argv: list[str] | None = None) -> int:
    config, args = parse_config(argv)
    err = Console(stderr=True, soft_wrap=True)  # messages stay on one line for grep and logs
    logging.basicConfig(
        level=args.log_level.upper(), format="%(message)s", handlers=[RichHandler(console=err, show_path=False)]
    )
    if config.wants_interactive():
        if not sys.stdin.isatty():
            err.print(
                "[red]no theorem given[/]: pass --theorem, --file or --name (with --dataset), or run on a terminal for an interactive session"
            )
            return 2
        from prover.search.interactive import InteractiveSession

        return InteractiveSession(config).run()
    with SearchSession(config) as session:
        try:
            problem = _problem(session, config)
            session.check_statement(problem)
            session.verifier  # started now: a broken Lean setup is reported before the model loads
            model = session.resolve_model()
            if not model:
                err.print("[red]no model[/]: pass --model PATH (or --sampler.model)")
                return 2
            check_model(model)  # from config.json alone: a bad path is one line, not a failed load
        except (StatementError, ModelNotFound) as exc:
            err.print(f"[red]bad input[/]: {escape(str(exc))}", highlight=False)
            return 2
        except LeanSetupError as exc:
            err.print(f"[red]Lean is not set up[/]: {escape(str(exc))}", highlight=False)
            return 2
        except (SearchError, VerifierError) as exc:
            err.print(f"[red]search failed[/]: {escape(str(exc))}", highlight=False)
            return 1
        if config.run_dir:
            write_run_info(
                config.run_dir,
                config,
                seeds={"seed": config.seed},
                lean_project=config.verifier.resolved_lean_project(),
            )
        try:
            result = run_search(session, problem, err, live=err.is_terminal and not config.json)
        except (SearchError, VerifierError) as exc:
            err.print(f"[red]search failed[/]: {escape(str(exc))}", highlight=False)
            return 1
    if config.json:
        print(json.dumps(result.to_json(), ensure_ascii=False))
    elif result.proved:
        if err.is_terminal:
            err.print(render_proof(result))
        print(result.full_text.rstrip())
    if not result.proved and not config.json:
        err.print("\n".join(summary_lines(result)), highlight=False, markup=False)
    return 0 if result.proved else 1


def _problem(session: SearchSession, config: SearchConfig):
    if config.theorem:
        return session.problem_from_text(config.theorem)
    if config.file:
        path = Path(config.file)
        if not path.is_file():
            raise StatementError(f"statement file {path} does not exist")
        return session.problem_from_text(path.read_text(), config.name or path.stem)
    return session.problem_from_dataset(config.name, config.task.dataset)
