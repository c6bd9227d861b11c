"""``python -m prover.train``: GRPO with the unlikeliness reward on a task's theorems.

With no arguments it runs the default job on CPU: the synthetic task's base model (built once and
cached), pass@N on the synthetic test set, plain GRPO and GRPO + unlikeliness trained from it under
the same settings, pass@N of both, a table and two plots (pass@k; uplift by likelihood rank).
``--config recipes/<model>/<method>/<variant>.yaml`` runs a recipe instead; ``--section.field value``
overrides a setting of either (``--help`` lists them).

Outputs in ``grpo.output_dir``: config.yaml + run_info.json, checkpoint-N/ (HF format), final/ (with
a model card), solved_proofs.jsonl, rank_bias.{jsonl,png}, eval_before/ and eval_after/, passk.png;
with ``compare_plain_grpo`` each variant's training outputs sit in grpo/ and grpo-unlikeliness/.
Rerunning the same command resumes; a rerun with other settings is refused, naming them.
"""

from __future__ import annotations

import copy
import logging
import os
import shlex
import shutil
import sys
from contextlib import nullcontext
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
    enabled: bool = field(
        default=False, metadata={"help": "measure pass@N with prover.evaluate before and after training"}
    )
    dataset: str | None = field(
        default=None, metadata={"help": "problem set to evaluate on (task.dataset names); None: the task's test set"}
    )
    limit: int | None = field(default=None, metadata={"help": "evaluate on the first N problems only"})
    samples: int = field(default=32, metadata={"help": "proofs sampled per problem (the N of pass@N)"})
    max_tokens: int | None = field(
        default=None, metadata={"help": "tokens per proof; None: grpo.max_completion_length"}
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_p: float = field(default=1.0, metadata={"help": "nucleus sampling mass"})
    sampler: SamplerConfig = field(
        default_factory=SamplerConfig, metadata={"help": "sampler for the evaluation (model is set here)"}
    )

    def __post_init__(self):
        for name, value in (("samples", self.samples), ("limit", self.limit), ("max_tokens", self.max_tokens)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")


@dataclass
class RankBiasSettings:
    enabled: bool = field(
        default=False, metadata={"help": "track the uplift rate by initial likelihood rank (the paper's Figure 4)"}
    )
    dataset: str | None = field(
        default=None, metadata={"help": "probe problems (task.dataset names); None: the training set"}
    )
    problems: int = field(default=16, metadata={"help": "probe problems (the first N of dataset)"})
    samples: int = field(default=32, metadata={"help": "proofs sampled per probe problem from the initial model (G)"})
    every: int = field(default=10, metadata={"help": "optimizer steps between evaluations of the probe"})

    def __post_init__(self):
        for name, value, low in (
            ("problems", self.problems, 1),
            ("samples", self.samples, 2),
            ("every", self.every, 1),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")


@dataclass
class TrainConfig:
    model: str | None = field(
        default=None,
        metadata={
            "help": "policy to start from (path or hub id); None with the synthetic task: its base model, built and cached on first use"
        },
    )
    max_prompt_tokens: int = field(
        default=512, metadata={"help": "problems whose prompt is longer are left out (TRL does not truncate prompts)"}
    )
    resume: bool = field(
        default=True,
        metadata={
            "help": "continue the run in grpo.output_dir (its last checkpoint, finished evaluations) when it holds one with the same settings; false: refuse a directory that holds a run"
        },
    )
    resume_changed: bool = field(
        default=False,
        metadata={
            "help": "continue the run in grpo.output_dir although settings differ from its config.yaml (the differences are logged and kept in run_info.json)"
        },
    )
    compare_plain_grpo: bool = field(
        default=False,
        metadata={
            "help": "also train plain GRPO (unlikeliness off) under the same settings: <output_dir>/grpo and <output_dir>/grpo-unlikeliness, shown side by side with the base model"
        },
    )
    task: TaskConfig = field(
        default_factory=lambda: TaskConfig(name="synthetic", dataset="train"),
        metadata={"help": "training problems, prompt format, proof extraction"},
    )
    verifier: VerifierConfig = field(
        default_factory=VerifierConfig,
        metadata={"help": "proof checker (the synthetic task's is exact and ignores this)"},
    )
    grpo: ProverGRPOConfig = field(
        default_factory=lambda: ProverGRPOConfig(**machine_defaults()),
        metadata={"help": "TRL GRPOConfig fields plus the unlikeliness ones"},
    )
    eval: EvalSettings = field(default_factory=EvalSettings, metadata={"help": "pass@N before and after"})
    rank_bias: RankBiasSettings = field(default_factory=RankBiasSettings, metadata={"help": "rank-bias diagnostic"})

    def __post_init__(self):
        if self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if self.compare_plain_grpo and not self.grpo.unlikeliness:
            raise ValueError(
                "compare_plain_grpo trains plain GRPO beside GRPO + unlikeliness: leave grpo.unlikeliness on"
            )


def machine_defaults() -> dict[str, Any]:
    """GRPOConfig defaults that depend on the machine: TRL's bf16 default fails on a CPU."""
    import torch

    return {"bf16": torch.cuda.is_available(), "output_dir": "runs/train"}


# The default job: GRPO + unlikeliness with one update per generated batch (the variant whose pass@256
# the synthetic study found highest, docs/synthetic.md) and plain GRPO beside it under the same settings.
# recipes/synthetic/grpo-unlikeliness/cpu.yaml holds the same settings for the unlikeliness run alone
# (a test keeps the two equal but for compare_plain_grpo and output_dir).
DEFAULT_JOB: dict[str, Any] = {
    "compare_plain_grpo": True,
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
        "num_iterations": 1,  # one update per generated batch: with 2, pass@256 fell in the study (93.6 -> 91.5)
        "beta": 0.0,  # no KL to the base model, as in the study
        "learning_rate": 2.0e-4,  # the tiny model needs far more than the 1e-6 of a 7B one
        "max_steps": 400,  # optimizer steps = generation steps (the study's budget)
        "logging_steps": 20,
        "save_steps": 100,
        "save_total_limit": 1,
        "report_to": "none",
        "seed": 0,
    },
    # 192 test theorems x 256 proofs, for the base and each trained model (~45 s each)
    "eval": {"enabled": True, "dataset": "test", "samples": 256, "sampler": {"batch_size": 256}},
    # 32 probe theorems x 16 proofs from the base model, as in the study (the probe draws from the global
    # RNG before training starts, so its size is part of what the seed decides); every 100 steps and at the end
    "rank_bias": {"enabled": True, "dataset": "probe", "problems": 32, "samples": 16, "every": 100},
}


def make_parser():
    """``--help`` text; the options themselves are parsed by prover.config (YAML + dotted overrides)."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m prover.train",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="options (grpo.* are TRL's GRPOConfig fields plus ours; the defaults shown are the default job's,\n"
        "a --config recipe replaces them):\n" + help_text(TrainConfig, defaults=default_job_settings()),
    )
    parser.add_argument("--config", help="recipe YAML; --section.field value overrides it")
    parser.add_argument("--print_config", action="store_true", help="print the resolved settings as YAML and exit")
    return parser


def is_main_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch (set before any process group exists), or a lone process."""
    return int(os.environ.get("RANK", "0")) == 0


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def resolve_model(config: TrainConfig, task: Task, progress: bool = True) -> str:
    if config.model:
        return config.model
    logger.info("building or reusing the %s task's base model", task.name)
    return str(task.ensure_base_model(progress=progress))


def evaluate_model(config: TrainConfig, model: str, run_dir: Path, title: str):
    """pass@N of ``model`` through the evaluator's API (resumes if ``run_dir`` holds a partial run)."""
    from dataclasses import replace

    from prover.eval.config import EvalConfig
    from prover.evaluate import run
    from prover.rl.preflight import eval_task_config

    e = config.eval
    task = eval_task_config(config)
    eval_config = EvalConfig(
        model=model,
        samples=e.samples,
        seed=config.grpo.seed,
        temperature=e.temperature,
        top_p=e.top_p,
        max_tokens=e.max_tokens or config.grpo.max_completion_length,
        run_dir=str(run_dir),
        task=task,
        sampler=replace(e.sampler, model=model),
        verifier=config.verifier,
        plot=False,
    )
    logger.info("evaluating %s: pass@k with %d samples per problem on %s", title, e.samples, task.dataset)
    summary, _ = run(eval_config)
    return summary


def train(config: TrainConfig, task: Task, problems, model: str, run_dir: Path) -> tuple[Path, bool]:
    """GRPO (+ unlikeliness) from ``model`` into ``run_dir``; returns the final model's directory and
    whether it was trained now (False: final/ is complete and no step is left to train).

    final/ is written under another name and renamed, so that it exists only once complete.
    """
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

    from prover.rl.resume_state import last_complete_checkpoint

    final = run_dir / "final"
    last = last_complete_checkpoint(run_dir)
    last_step = int(Path(last).name.removeprefix(f"{PREFIX_CHECKPOINT_DIR}-")) if last else None
    if (final / "config.json").is_file() and (last_step is None or last_step >= config.grpo.max_steps):
        logger.info("%s is complete: training finished earlier", final)
        return final, False

    from prover.rl.resume_state import discard_incomplete_checkpoints

    discard_incomplete_checkpoints(run_dir)
    if last is None:
        _start_over(run_dir)

    from transformers import AutoTokenizer

    from prover.rl.dataset import build_dataset
    from prover.rl.progress import use_line_progress
    from prover.rl.rank_bias import RankBiasCallback
    from prover.rl.rewards import ProofReward
    from prover.rl.trainer import UnlikelinessGRPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(model)
    dataset = build_dataset(task, problems, tokenizer, config.max_prompt_tokens)
    logger.info("training on %d problems of %s", len(dataset), config.task.dataset or task.name)
    with task.make_verifier(config.verifier) as verifier:
        reward = ProofReward(task, verifier)
        callbacks = []
        if config.rank_bias.enabled:
            callbacks.append(
                RankBiasCallback(run_dir, _probe_builder(config, task, tokenizer, reward), every=config.rank_bias.every)
            )
        trainer = UnlikelinessGRPOTrainer(
            model=model,
            reward_funcs=[reward],
            args=config.grpo,
            train_dataset=dataset,
            callbacks=callbacks,
            solved_path=run_dir / "solved_proofs.jsonl",
        )
        use_line_progress(trainer)
        for cb in callbacks:
            cb.log_metric = trainer._log_metric  # TRL's channel for extra metrics (averaged over processes)
        if last:
            logger.info("resuming from %s", last)
        trainer.train(resume_from_checkpoint=last)
        partial = run_dir / "final.partial"
        trainer.save_model(str(partial))
        if trainer.accelerator.is_main_process:
            tokenizer.save_pretrained(str(partial))
            shutil.rmtree(final, ignore_errors=True)
            partial.rename(final)
        trainer.accelerator.wait_for_everyone()
    return final, True


# What training writes besides checkpoints; a run that reached no complete checkpoint writes it anew.
TRAINING_FILES = ("solved_proofs.jsonl", "rank_bias_probe.json", "rank_bias.jsonl", "rank_bias.png")


def _start_over(run_dir: Path) -> None:
    """Remove what an attempt that reached no checkpoint wrote, so that starting over repeats it exactly
    (every process does it before any reaches the first barrier of training)."""
    import torch.distributed as dist

    stale = [run_dir / name for name in TRAINING_FILES if (run_dir / name).exists()]
    if stale:
        logger.warning(
            "%s reached no checkpoint before it stopped: starting over, removing %s",
            run_dir,
            ", ".join(p.name for p in stale),
        )
    for path in stale:
        path.unlink(missing_ok=True)
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _probe_builder(config: TrainConfig, task: Task, tokenizer, reward):
    from prover.rl.rank_bias import RankBiasProbe

    rb = config.rank_bias

    def build(model):
        problems = task.load_problems(rb.dataset or config.task.dataset)[: rb.problems]
        logger.info(
            "rank-bias probe: sampling %d proofs for each of %d problems from the initial model",
            rb.samples,
            len(problems),
        )
        return RankBiasProbe.sample(
            model,
            tokenizer,
            [task.build_prompt(p) for p in problems],
            problems,
            reward.score,
            rb.samples,
            max_new_tokens=config.grpo.max_completion_length,
            temperature=config.grpo.temperature,
            seed=config.grpo.seed,
            rank_key=config.grpo.rank_key,
        )

    return build


@dataclass
class Variant:
    """One training run of the job: its label, settings and directory."""

    label: str
    config: TrainConfig
    run_dir: Path


def variants(config: TrainConfig) -> list[Variant]:
    """This run alone, or with ``compare_plain_grpo`` plain GRPO and GRPO + unlikeliness in subdirectories."""
    run_dir = Path(config.grpo.output_dir)
    if not config.compare_plain_grpo:
        label = "GRPO + unlikeliness" if config.grpo.unlikeliness else "GRPO"
        return [Variant(label, config, run_dir)]
    out = []
    for label, name, unlikely in (("GRPO", "grpo", False), ("GRPO + unlikeliness", "grpo-unlikeliness", True)):
        # copies, not dataclasses.replace: GRPOConfig would refuse its own derived fields given back to it
        grpo = copy.copy(config.grpo)
        grpo.output_dir, grpo.unlikeliness = str(run_dir / name), unlikely
        variant = copy.copy(config)
        variant.grpo, variant.compare_plain_grpo = grpo, False
        out.append(Variant(label, variant, run_dir / name))
    return out


def command_line(argv: list[str]) -> str:
    """The command that reruns this job (and so resumes it)."""
    if world_size() > 1:
        return "the same torchrun / accelerate launch command"
    return shlex.join(["python", "-m", "prover.train", *argv])


def write_card(variant: Variant, base_model: str, command: str, before, after, note: str = "") -> None:
    from prover.rl.model_card import write_model_card

    write_model_card(
        [variant.run_dir / "final" / "README.md", variant.run_dir / "README.md"],
        variant.config,
        base_model,
        command,
        {"before": before, "after": after},
        note=note,
    )


def report(summaries: dict[str, Any], run_dir: Path, title: str) -> Path:
    """Print the table (each run against the first) and write the pass@k plot; returns the plot's path."""
    from prover.eval.report import plot_passk, print_compare

    print_compare(summaries)
    return plot_passk(summaries, run_dir / "passk.png", title=title)


def plot_rank_bias(runs: list[Variant], run_dir: Path) -> Path | None:
    """Both variants' last rank-bias result, with intervals, in one plot."""
    import json

    from prover.rl.rank_bias import RankBiasResult, plot_uplift_comparison

    results = {}
    for v in runs:
        path = v.run_dir / "rank_bias.jsonl"
        lines = [line for line in path.read_text().splitlines() if line] if path.is_file() else []
        if lines:
            results[v.label] = RankBiasResult(**json.loads(lines[-1]))
    if not results or any(r.outcomes is None for r in results.values()):
        return None
    step = max(r.step for r in results.values())
    return plot_uplift_comparison(
        results,
        run_dir / "rank_bias.png",
        title=f"Uplift by initial rank after {step} steps (95% intervals over probe problems)",
    )


def run(config: TrainConfig, default_job: bool = False, argv: list[str] | None = None) -> int:
    """Check everything, take the run directory, then evaluate the base, train, evaluate, report."""
    from prover.rl.preflight import check_training_setup
    from prover.rl.progress import is_terminal, quiet_library_bars
    from prover.run_lock import RunLock
    from prover.run_settings import check_resume
    from prover.runinfo import write_run_info

    setup = check_training_setup(config)  # nothing is written or loaded before this passes
    run_dir = Path(config.grpo.output_dir)
    if not is_terminal():
        quiet_library_bars()
    if config.eval.enabled and world_size() > 1:
        logger.warning("eval.enabled is ignored under a multi-process launch: run prover.evaluate on final/ afterwards")
        config.eval.enabled = False
    command = command_line(argv or [])
    with RunLock(run_dir, command) if is_main_process() else nullcontext():
        changed = check_resume(run_dir, config, config.resume, config.resume_changed)
        model = resolve_model(config, setup.task, progress=is_terminal())
        if is_main_process():
            extra = {"model": model, "command": command}
            if changed:
                extra["changed_on_resume"] = {k: [repr(a), repr(b)] for k, (a, b) in changed.items()}
            write_run_info(
                run_dir,
                config,
                seeds={"seed": config.grpo.seed, "data_seed": config.grpo.data_seed or config.grpo.seed},
                lean_project=config.verifier.resolved_lean_project(),
                extra=extra,
            )
        runs = variants(config)
        steps = len(runs) * (2 if config.eval.enabled else 1) + (1 if config.eval.enabled else 0)
        step = 0

        def announce(text: str) -> None:
            nonlocal step
            step += 1
            print(f"[{step}/{steps}] {text}", flush=True)

        summaries: dict[str, Any] = {}
        if config.eval.enabled:
            announce(f"pass@k of the base model ({model})")
            summaries["base"] = evaluate_model(config, model, run_dir / "eval_before", "the base model")
        for v in runs:
            announce(f"{v.label} for {v.config.grpo.max_steps} steps -> {v.run_dir}")
            final, trained = train(v.config, setup.task, setup.train_problems, model, v.run_dir)
            print(f"final model: {final}", flush=True)
            after = None
            stale = v.run_dir / "eval_after"
            if trained and stale.is_dir() and is_main_process():  # results of the final/ just replaced
                logger.warning("removing %s: it evaluated the model that final/ held before this run", stale)
                shutil.rmtree(stale)
            if config.eval.enabled:
                announce(f"pass@k of the {v.label} model")
                after = summaries[v.label] = evaluate_model(
                    v.config, str(final), v.run_dir / "eval_after", f"the {v.label} model"
                )
            if is_main_process():
                note = (
                    "Plain GRPO and GRPO + unlikeliness were trained side by side by the same command."
                    if config.compare_plain_grpo
                    else ""
                )
                write_card(v, model, command, summaries.get("base"), after, note)
        if config.eval.enabled:
            title = " / ".join(summaries) + f": pass@k on {config.eval.dataset or 'the test set'}"
            print(f"pass@k plot: {report(summaries, run_dir, title)}")
        if config.rank_bias.enabled and len(runs) > 1:
            plot = plot_rank_bias(runs, run_dir)
            if plot:
                print(f"rank-bias plot: {plot}")
        elif config.rank_bias.enabled and (run_dir / "rank_bias.png").exists():
            print(f"rank-bias plot: {run_dir / 'rank_bias.png'}")
    if default_job:
        print(
            "\nNext: the real recipe (Lean + Mathlib, GPUs, DeepSeek-Prover-V1.5-SFT), see docs/training.md:\n"
            f"  accelerate launch --config_file configs/accelerate/fsdp.yaml -m prover.train --config {LEAN_RECIPE}"
        )
    return 0


def interrupted_line(config: TrainConfig, argv: list[str]) -> str:
    """What Ctrl-C prints: where the run stands and the command that resumes it."""
    from prover.rl.resume_state import last_complete_checkpoint

    run_dir = Path(config.grpo.output_dir)
    checkpoints = [c for c in (last_complete_checkpoint(v.run_dir) for v in variants(config)) if c]
    where = f"last checkpoint {checkpoints[-1]}" if checkpoints else "no checkpoint yet"
    return (
        f"prover.train: interrupted ({where}; finished evaluations in {run_dir} are kept); "
        f"resume with: {command_line(argv)}"
    )


def default_job_settings() -> dict[str, Any]:
    return {**DEFAULT_JOB, "grpo": {**machine_defaults(), **DEFAULT_JOB["grpo"]}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        make_parser().print_help()
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    print_config = "--print_config" in argv  # a dry run: the settings a recipe resolves to, nothing trained
    argv = [a for a in argv if a != "--print_config"]
    # Without a recipe, the settings are the default job's; overrides still apply on top of them.
    default_job = not any(a == "--config" or a.startswith("--config=") for a in argv)
    try:
        defaults = default_job_settings() if default_job else {"grpo": machine_defaults()}
        config = load_config(TrainConfig, argv, defaults=defaults)
    except ConfigError as exc:  # before anything else is printed: a user error is this one line
        print(f"prover.train: {exc}", file=sys.stderr)
        return 2
    if print_config:
        import yaml

        print(yaml.safe_dump(to_dict(config), sort_keys=False, allow_unicode=True), end="")
        return 0
    if default_job:
        print(
            "prover.train: no recipe given, running the default job (synthetic task on CPU, base / GRPO / "
            "GRPO + unlikeliness, minutes)",
            flush=True,
        )
    _quiet_cpu_run(config)
    from prover.eval.records import RecordsError
    from prover.eval.runner import EvalError
    from prover.rl.preflight import SetupError
    from prover.run_lock import RunDirBusy
    from prover.run_settings import SettingsChanged

    try:
        return run(config, default_job, argv)
    except (SetupError, SettingsChanged, RunDirBusy, EvalError, RecordsError) as exc:
        print(f"prover.train: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(interrupted_line(config, argv), file=sys.stderr)
        return 130


def _quiet_cpu_run(config: TrainConfig) -> None:
    """Silence what libraries say on import that is not about a CPU run: TRL imports vLLM whenever it is
    installed, whose Triton probe logs three lines (one a WARNING); DeepSpeed, when installed, prints that
    it fell back to the CPU."""
    import torch

    if config.grpo.use_cpu or not torch.cuda.is_available():
        logging.getLogger("vllm.triton_utils").setLevel(logging.ERROR)
        os.environ.setdefault("DS_ACCELERATOR", "cpu")


if __name__ == "__main__":
    sys.exit(main())
