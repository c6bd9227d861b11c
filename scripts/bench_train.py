"""Time per GRPO optimizer step with and without the unlikeliness reward, on the tiny CPU setup.

The ranking needs the old policy's log-probs of each generated batch: with num_iterations > 1 TRL
computes them anyway and the trainer reuses them; with num_iterations = 1 it costs one no-grad
forward pass. Plus O(G^2) tensor work per group. The target is <= 10% of a step.

    python scripts/bench_train.py                       # 3 rounds x 8 steps, each mode
    python scripts/bench_train.py --rounds 5 --steps 12 --completion-tokens 64
    python scripts/bench_train.py --iterations 1         # the extra forward pass of 1 PPO epoch
    python scripts/bench_train.py --plan                 # the dynamic update's planning at the recipe's scale

Both modes run the same seeds, batch shapes and verifier; rounds alternate the modes so that a
busy machine slows both alike. Prints a table and writes JSON with --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per mode (alternating)")
    parser.add_argument(
        "--steps", type=int, default=8, help="optimizer steps per run (2 per generation: num_iterations=2)"
    )
    parser.add_argument("--prompts", type=int, default=4, help="theorems per generation step")
    parser.add_argument("--generations", type=int, default=8, help="samples per theorem (G)")
    parser.add_argument("--completion-tokens", type=int, default=32, help="max_completion_length")
    parser.add_argument(
        "--iterations",
        type=int,
        default=2,
        help="num_iterations (PPO epochs); with 1, TRL computes no old log-probs and the ranking "
        "needs its own forward pass",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; with 1, CPU time per step is a fair measure on a shared machine",
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument(
        "--plan",
        action="store_true",
        help="time only the dynamic update's planning (concatenating the buffer and cutting one "
        "process's steps) for the Lean recipe's largest update: 767 rows of 512 + 512 tokens, "
        "8 processes x 8 accumulation x 4 rows",
    )
    return parser


def bench_plan(args) -> dict[str, float]:
    """Seconds to concatenate a worst-case buffer (16 parts of up to 48 rows) and plan one process's steps."""
    import torch

    from prover.rl.update_plan import concat_rows, plan_update

    gen = torch.Generator().manual_seed(0)
    parts = []
    for _ in range(16):  # one part per (generation batch, process), each padded to its own widths
        n = 48
        p, c = (int(torch.randint(lo, 513, (1,), generator=gen)) for lo in (200, 50))
        parts.append(
            {
                "prompt_ids": torch.randint(0, 32000, (n, p), generator=gen),
                "prompt_mask": torch.ones(n, p, dtype=torch.long),
                "completion_ids": torch.randint(0, 32000, (n, c), generator=gen),
                "completion_mask": torch.ones(n, c, dtype=torch.long),
                "old_per_token_logps": torch.randn(n, c, generator=gen),
                "ref_per_token_logps": torch.randn(n, c, generator=gen),
                "advantages": torch.randn(n, generator=gen),
            }
        )
    parts[-1] = {k: v[: 767 - 48 * 15] for k, v in parts[-1].items()}
    times = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        rows = concat_rows(parts, pad_id=0)
        steps = plan_update(rows, step_rows=256, processes=8, micro_batches=8, rank=3, items_scale=2.0)
        times.append(time.perf_counter() - start)
    return {"rows": len(rows["advantages"]), "steps": len(steps), "seconds": statistics.median(times)}


def run_once(model_dir: Path, out: Path, unlikeliness: bool, args) -> dict[str, float]:
    from transformers import AutoTokenizer, PrinterCallback

    from prover.data.problem import Problem
    from prover.rl.config import ProverGRPOConfig
    from prover.rl.dataset import build_dataset
    from prover.rl.rewards import ProofReward
    from prover.rl.trainer import UnlikelinessGRPOTrainer
    from prover.tasks.base import Task, TaskConfig
    from prover.verifier.base import Verifier
    from prover.verifier.verdict import Status, Verdict

    class LetterVerifier(Verifier):
        """Exact and instant (a proof holds when it has two letters 'o'), so only training is timed."""

        async def check(self, request):
            return Verdict(Status.PROVED if request.proof.count("o") >= 2 else Status.REJECTED, check="exact")

    class BenchTask(Task):
        name = "bench"
        config = TaskConfig(name="bench", require_closing_fence=False)

        def load_problems(self, dataset=None):
            return [Problem(name=f"t{i}", statement=f"theorem t{i} : {i} + 0 = {i} := by") for i in range(64)]

        def build_prompt(self, problem):
            return f"{problem.statement}\n"

        def extract_proof(self, completion, problem=None):
            return completion

        def make_verifier(self, config=None):
            return LetterVerifier()

    task = BenchTask()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = ProverGRPOConfig(
        output_dir=str(out),
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        report_to="none",
        per_device_train_batch_size=args.prompts * args.generations,
        num_generations=args.generations,
        max_completion_length=args.completion_tokens,
        num_iterations=args.iterations,
        beta=0.1,
        max_steps=args.steps,
        logging_steps=1,
        save_strategy="no",
        seed=0,
        unlikeliness=unlikeliness,
        dynamic_update=False,
        disable_tqdm=True,
    )
    trainer = UnlikelinessGRPOTrainer(
        model=str(model_dir),
        reward_funcs=[ProofReward(task, task.make_verifier())],
        args=config,
        train_dataset=build_dataset(task, task.load_problems(), tokenizer),
    )
    trainer.remove_callback(PrinterCallback)  # the per-step log dicts would drown the table
    start, cpu = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rank = sum(h.get("time/rank", 0.0) for h in trainer.state.log_history)
    return {
        "seconds": seconds,
        "per_step": seconds / args.steps,
        "cpu_per_step": cpu / args.steps,
        "rank_seconds": rank,
    }


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    import logging

    import torch
    import transformers

    from prover.testing.tiny_model import build_tiny_model

    torch.set_num_threads(args.threads)
    if args.plan:
        result = bench_plan(args)
        print(
            f"dynamic update planning: {result['rows']} rows -> {result['steps']} optimizer steps per epoch in "
            f"{result['seconds']:.3f} s (median of {args.rounds})"
        )
        if args.out:
            args.out.write_text(json.dumps(result, indent=2))
        return 0
    transformers.logging.set_verbosity_error()
    logging.basicConfig(level=logging.WARNING)
    results: dict[str, list[dict[str, float]]] = {"grpo": [], "unlikeliness": []}
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(Path(tmp) / "tiny")
        run_once(model_dir, Path(tmp) / "warmup", True, argparse.Namespace(**{**vars(args), "steps": 2}))
        for r in range(args.rounds):
            for mode in ("grpo", "unlikeliness") if r % 2 == 0 else ("unlikeliness", "grpo"):
                res = run_once(model_dir, Path(tmp) / f"{mode}{r}", mode == "unlikeliness", args)
                results[mode].append(res)
                print(
                    f"round {r + 1}/{args.rounds} {mode:>12}: {res['per_step']:.3f} s/step wall, "
                    f"{res['cpu_per_step']:.3f} s/step CPU",
                    file=sys.stderr,
                )
    med = {
        mode: {key: statistics.median(x[key] for x in runs) for key in ("per_step", "cpu_per_step")}
        for mode, runs in results.items()
    }
    rank = statistics.median(x["rank_seconds"] / x["seconds"] for x in results["unlikeliness"])
    summary = {
        "median": med,
        "overhead_wall": med["unlikeliness"]["per_step"] / med["grpo"]["per_step"] - 1,
        "overhead_cpu": med["unlikeliness"]["cpu_per_step"] / med["grpo"]["cpu_per_step"] - 1,
        "ranking_share_of_run": rank,
        "settings": {k: str(v) for k, v in vars(args).items()},
        "runs": results,
    }
    print(f"{'mode':<14}{'wall s/step':>13}{'CPU s/step':>12}   (medians of {args.rounds} runs x {args.steps} steps)")
    for mode in ("grpo", "unlikeliness"):
        print(f"{mode:<14}{med[mode]['per_step']:>13.3f}{med[mode]['cpu_per_step']:>12.3f}")
    print(
        f"overhead: {100 * summary['overhead_cpu']:+.1f}% CPU, {100 * summary['overhead_wall']:+.1f}% wall "
        f"(the ranking forward pass: {100 * rank:.1f}% of the run's wall time)"
    )
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
