"""``python -m prover.train``: GRPO with the unlikeliness reward on a task's theorems.

With no arguments it runs the default job on CPU: the synthetic task's base model (built once and
cached), pass@N on the synthetic test set before training, GRPO + unlikeliness, pass@N after,
a table and a plot. ``--config recipes/<model>/<method>/<variant>.yaml`` runs a recipe instead;
``--section.field value`` overrides a setting of either (``--help`` lists them).

Outputs in ``grpo.output_dir``: config.yaml + run_info.json, checkpoint-N/ (HF format; a rerun
resumes from the last one), final/, solved_proofs.jsonl, rank_bias.{jsonl,png}, eval_{before,after}/.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prover.config import ConfigError, help_text, load_config, to_dict
from prover.rl.config import ProverGRPOConfig
from prover.sampling.config import SamplerConfig
from prover.tasks.base import Task, TaskConfig
from prover.verifier.config import VerifierConfig

logger = logging.getLogger("prover.train")

LEAN_RECIPE = "recipes/deepseek-prover-v1.5-sft/grpo-unlikeliness/lean-workbook.yaml"


@dataclass
class EvalSettings:
    enabled: bool = field(default=False, metadata={"help": "measure pass@N with prover.evaluate before and after training"})
    dataset: str | None = field(default=None, metadata={"help": "problem set to evaluate on (task.dataset names); None: the task's test set"})
    limit: int | None = field(default=None, metadata={"help": "evaluate on the first N problems only"})
    samples: int = field(default=32, metadata={"help": "proofs sampled per problem (the N of pass@N)"})
    max_tokens: int | None = field(default=None, metadata={"help": "tokens per proof; None: grpo.max_completion_length"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    sampler: SamplerConfig = field(default_factory=SamplerConfig, metadata={"help": "sampler for the evaluation (model is set here)"})


@dataclass
class RankBiasSettings:
    enabled: bool = field(default=False, metadata={"help": "track the uplift rate by initial likelihood rank (the paper's Figure 4)"})
    dataset: str | None = field(default=None, metadata={"help": "probe problems (task.dataset names); None: the training set"})
    problems: int = field(default=16, metadata={"help": "probe problems (the first N of dataset)"})
    samples: int = field(default=32, metadata={"help": "proofs sampled per probe problem from the initial model (G)"})
    every: int = field(default=10, metadata={"help": "optimizer steps between evaluations of the probe"})


@dataclass
class TrainConfig:
    model: str | None = field(default=None, metadata={"help": "policy to start from (path or hub id); None with the synthetic task: its base model, built and cached on first use"})
    max_prompt_tokens: int = field(default=512, metadata={"help": "problems whose prompt is longer are left out (TRL does not truncate prompts)"})
    resume: bool = field(default=True, metadata={"help": "continue from the last checkpoint in grpo.output_dir when there is one"})
    task: TaskConfig = field(default_factory=lambda: TaskConfig(name="synthetic", dataset="train"), metadata={"help": "training problems, prompt format, proof extraction"})
    verifier: VerifierConfig = field(default_factory=VerifierConfig, metadata={"help": "proof checker (the synthetic task's is exact and ignores this)"})
    grpo: ProverGRPOConfig = field(default_factory=lambda: ProverGRPOConfig(**machine_defaults()), metadata={"help": "TRL GRPOConfig fields plus the unlikeliness ones"})
    eval: EvalSettings = field(default_factory=EvalSettings, metadata={"help": "pass@N before and after"})
    rank_bias: RankBiasSettings = field(default_factory=RankBiasSettings, metadata={"help": "rank-bias diagnostic"})


def machine_defaults() -> dict[str, Any]:
    """GRPOConfig defaults that depend on the machine: TRL's bf16 default fails on a CPU."""
    import torch

    return {"bf16": torch.cuda.is_available(), "output_dir": "runs/train"}


# The default job: one seed of scripts/synthetic_study.py's "grpo+unlikeliness-2updates" variant, the
# paper's recipe at CPU scale (minutes on 2 cores). recipes/synthetic/grpo-unlikeliness/cpu.yaml holds the
# same settings (a test keeps them equal).
DEFAULT_JOB: dict[str, Any] = {
    "task": {"name": "synthetic", "dataset": "train"},
    "grpo": {
        "output_dir": "runs/default-job",
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "num_generations": 16,  # G samples per theorem
        "per_device_train_batch_size": 128,  # 8 theorems x 16 samples per generation step
        "max_completion_length": 14,  # the longest synthetic proof: 6 (op, value) pairs, "qed", EOS
        "unlikeliness": True,
        "num_iterations": 2,  # 2 PPO epochs per generated batch (the paper's recipe)
        "beta": 0.0,  # no KL to the base model, as in the study
        "learning_rate": 2.0e-4,  # the tiny model needs far more than the 1e-6 of a 7B one
        "max_steps": 800,  # optimizer steps: 400 generation steps x 2 epochs (~3 min on 2 cores)
        "logging_steps": 20,
        "save_steps": 200,
        "save_total_limit": 1,
        "report_to": "none",
        "seed": 0,
    },
    # 192 test theorems x 256 proofs, before and after (~45 s each)
    "eval": {"enabled": True, "dataset": "test", "samples": 256, "sampler": {"batch_size": 256}},
    "rank_bias": {"enabled": True, "dataset": "probe", "problems": 32, "samples": 16, "every": 200},
}


def make_parser():
    """``--help`` text; the options themselves are parsed by prover.config (YAML + dotted overrides)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m prover.train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="options (grpo.* are TRL's GRPOConfig fields plus ours; the defaults shown are the default job's,\n"
               "a --config recipe replaces them):\n" + help_text(TrainConfig, defaults=default_job_settings()))
    parser.add_argument("--config", help="recipe YAML; --section.field value overrides it")
    parser.add_argument("--print_config", action="store_true", help="print the resolved settings as YAML and exit")
    return parser


def resolve_model(config: TrainConfig, task: Task) -> str:
    if config.model:
        return config.model
    if hasattr(task, "ensure_base_model"):
        logger.info("building or reusing the %s task's base model", task.name)
        return str(task.ensure_base_model())
    raise ConfigError(f"model is required for task {task.name!r}: pass --model <path or hub id>")


def evaluate_model(config: TrainConfig, model: str, run_dir: Path, title: str):
    """pass@N of ``model`` through the evaluator's API (resumes if ``run_dir`` holds a partial run)."""
    from dataclasses import replace

    from prover.eval.config import EvalConfig
    from prover.evaluate import run

    e = config.eval
    task = replace(config.task, dataset=e.dataset or _test_set(config.task), limit=e.limit)
    eval_config = EvalConfig(
        model=model, samples=e.samples, seed=config.grpo.seed, temperature=e.temperature, top_p=e.top_p,
        max_tokens=e.max_tokens or config.grpo.max_completion_length, run_dir=str(run_dir), task=task,
        sampler=replace(e.sampler, model=model), verifier=config.verifier, plot=False,
    )
    logger.info("evaluating %s: pass@k with %d samples per problem on %s", title, e.samples, task.dataset)
    summary, _ = run(eval_config)
    return summary


def _test_set(task: TaskConfig) -> str:
    return "test" if task.name == "synthetic" else "minif2f-test"


def train(config: TrainConfig, task: Task, model: str, run_dir: Path) -> Path:
    """GRPO (+ unlikeliness) from ``model``; returns the final model's directory."""
    from transformers import AutoTokenizer
    from transformers.trainer_utils import get_last_checkpoint

    from prover.rl.dataset import build_dataset
    from prover.rl.rank_bias import RankBiasCallback
    from prover.rl.rewards import ProofReward
    from prover.rl.trainer import UnlikelinessGRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model)
    problems = task.load_problems(config.task.dataset)
    dataset = build_dataset(task, problems, tokenizer, config.max_prompt_tokens)
    logger.info("training on %d problems of %s", len(dataset), config.task.dataset or task.name)
    with task.make_verifier(config.verifier) as verifier:
        reward = ProofReward(task, verifier)
        callbacks = []
        if config.rank_bias.enabled:
            callbacks.append(RankBiasCallback(run_dir, _probe_builder(config, task, tokenizer, reward),
                                              every=config.rank_bias.every))
        trainer = UnlikelinessGRPOTrainer(model=model, reward_funcs=[reward], args=config.grpo,
                                          train_dataset=dataset, callbacks=callbacks,
                                          solved_path=run_dir / "solved_proofs.jsonl")
        for cb in callbacks:
            cb.log_metric = trainer._log_metric  # TRL's channel for extra metrics (averaged over processes)
        last = get_last_checkpoint(str(run_dir)) if config.resume and run_dir.is_dir() else None
        if last:
            logger.info("resuming from %s", last)
        trainer.train(resume_from_checkpoint=last)
        final = run_dir / "final"
        trainer.save_model(str(final))
        if trainer.accelerator.is_main_process:
            tokenizer.save_pretrained(str(final))
    return final


def _probe_builder(config: TrainConfig, task: Task, tokenizer, reward):
    from dataclasses import replace

    from prover.rl.rank_bias import RankBiasProbe

    rb = config.rank_bias

    def build(model):
        probe_task = replace(config.task, dataset=rb.dataset or config.task.dataset)
        problems = task.load_problems(probe_task.dataset)[:rb.problems]
        logger.info("rank-bias probe: sampling %d proofs for each of %d problems from the initial model",
                    rb.samples, len(problems))
        return RankBiasProbe.sample(model, tokenizer, [task.build_prompt(p) for p in problems], problems,
                                    reward.score, rb.samples, max_new_tokens=config.grpo.max_completion_length,
                                    temperature=config.grpo.temperature, seed=config.grpo.seed,
                                    rank_key=config.grpo.rank_key)

    return build


def report(summaries: dict[str, Any], run_dir: Path) -> Path:
    """Print the before/after table and write the pass@k plot; returns the plot's path."""
    from prover.eval.report import plot_passk, print_compare

    print_compare(summaries)
    return plot_passk(summaries, run_dir / "passk_before_after.png", title="pass@k before and after GRPO + unlikeliness")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        make_parser().print_help()
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    print_config = "--print_config" in argv  # a dry run: the settings a recipe resolves to, nothing trained
    argv = [a for a in argv if a != "--print_config"]
    # Without a recipe, the settings are the default job's; overrides still apply on top of them.
    default_job = not any(a == "--config" or a.startswith("--config=") for a in argv)
    defaults = default_job_settings() if default_job else {"grpo": machine_defaults()}
    try:
        config = load_config(TrainConfig, argv, defaults=defaults)
    except ConfigError as exc:  # before anything else is printed: a user error is this one line
        print(f"prover.train: {exc}", file=sys.stderr)
        return 2
    if print_config:
        import yaml

        print(yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True), end="")
        return 0
    if default_job:
        print("prover.train: no recipe given, running the default job (synthetic task on CPU, minutes)")
    return run(config, default_job)


def default_job_settings() -> dict[str, Any]:
    return {**DEFAULT_JOB, "grpo": {**machine_defaults(), **DEFAULT_JOB["grpo"]}}


def run(config: TrainConfig, default_job: bool = False) -> int:
    from prover.runinfo import write_run_info
    from prover.tasks.base import make_task

    run_dir = Path(config.grpo.output_dir)
    task = make_task(config.task)
    model = resolve_model(config, task)
    write_run_info(run_dir, config, seeds={"seed": config.grpo.seed, "data_seed": config.grpo.data_seed or config.grpo.seed},
                   lean_project=config.verifier.resolved_lean_project(), extra={"model": model})
    summaries = {}
    if config.eval.enabled and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        logger.warning("eval.enabled is ignored under a multi-process launch: run prover.evaluate on final/ afterwards")
        config.eval.enabled = False
    if config.eval.enabled:
        print(f"[1/3] pass@k of the initial model ({model})")
        summaries["before"] = evaluate_model(config, model, run_dir / "eval_before", "the initial model")
    print(f"[2/3] GRPO{' + unlikeliness' if config.grpo.unlikeliness else ''} for {config.grpo.max_steps} steps -> {run_dir}")
    final = train(config, task, model, run_dir)
    print(f"final model: {final}")
    if config.eval.enabled:
        print("[3/3] pass@k of the trained model")
        summaries["after"] = evaluate_model(config, str(final), run_dir / "eval_after", "the trained model")
        plot = report(summaries, run_dir)
        print(f"pass@k plot: {plot}")
    if config.rank_bias.enabled and (run_dir / "rank_bias.png").exists():
        print(f"rank-bias plot: {run_dir / 'rank_bias.png'}")
    if default_job:
        print("\nNext: the real recipe (Lean + Mathlib, GPUs, DeepSeek-Prover-V1.5-SFT), see docs/training.md:\n"
              f"  accelerate launch --config_file configs/accelerate/fsdp.yaml -m prover.train --config {LEAN_RECIPE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
