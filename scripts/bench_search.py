"""Search benchmark: how many of the first N problems each strategy proves, with how many samples
and how much time, one model and one verifier for all (as the interactive session keeps them).

    python scripts/bench_search.py --problems 16 --budget 32                 # synthetic task, its base model
    python scripts/bench_search.py --task lean --dataset minif2f-test --model PATH --strategies whole,resume

Prints one row per strategy and a JSON line with the same numbers.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

from prover.search import SearchConfig, SearchSession
from prover.tasks.base import TaskConfig


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="synthetic")
    parser.add_argument("--dataset", default="test")
    parser.add_argument("--model", default=None, help="default: the task's base model (synthetic)")
    parser.add_argument("--problems", type=int, default=16, help="the first N problems of the dataset")
    parser.add_argument("--budget", type=int, default=32, help="samples per problem")
    parser.add_argument("--round-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--strategies", default="whole,resume")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = SearchConfig(
        budget=args.budget,
        round_size=args.round_size,
        max_tokens=args.max_tokens,
        seed=args.seed,
        time_limit=0,
        task=TaskConfig(name=args.task, dataset=args.dataset),
    )
    config.sampler.model = args.model
    config.sampler.device = "cpu"
    rows = []
    with SearchSession(config) as session:
        problems = session.task.load_problems(args.dataset)[: args.problems]
        session.sampler  # loaded once, outside the timings
        for strategy in args.strategies.split(","):
            session.config.strategy = strategy
            t0 = time.perf_counter()
            results = [session.search(p) for p in problems]
            seconds = time.perf_counter() - t0
            proved = [r for r in results if r.proved]
            rows.append(
                {
                    "strategy": strategy,
                    "problems": len(problems),
                    "proved": len(proved),
                    "median_samples_to_proof": statistics.median(r.progress.samples for r in proved)
                    if proved
                    else None,
                    "samples": sum(r.progress.samples for r in results),
                    "seconds": round(seconds, 1),
                    "samples_per_second": round(sum(r.progress.samples for r in results) / seconds, 1),
                }
            )
            row = rows[-1]
            print(
                f"{strategy:>10}: {row['proved']}/{row['problems']} proved, median {row['median_samples_to_proof']} samples "
                f"to a proof, {row['samples']} samples in {row['seconds']} s ({row['samples_per_second']}/s)"
            )
    print(json.dumps({"task": args.task, "dataset": args.dataset, "budget": args.budget, "results": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
