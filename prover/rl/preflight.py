"""What a training launch checks before it writes anything or loads a model.

A bad dataset name, model path or ``report_to`` used to surface minutes in (after the base model
and the first evaluation; on 8 GPUs after loading a 7B model), having already rewritten the run
directory's record. Everything here is cheap: problem files are read, model paths looked up, the
reporting packages found, and the Lean project located; nothing is written or loaded onto a device.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from prover.config import ConfigError
from prover.data.problem import Problem
from prover.tasks.base import Task, TaskConfig, make_task

if TYPE_CHECKING:
    from prover.train import TrainConfig


class SetupError(RuntimeError):
    """The launch names something that is not there or not usable; raised before anything is written."""


# report_to integrations this project's extras install: name -> extra.
REPORTING_EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb"}


@dataclass
class Setup:
    """What the checks loaded and the run goes on to use."""

    task: Task
    train_problems: list[Problem]


def default_eval_set(task: TaskConfig) -> str:
    """The evaluation set when ``eval.dataset`` is not given."""
    return "test" if task.name == "synthetic" else "minif2f-test"


def eval_task_config(config: TrainConfig) -> TaskConfig:
    """The task settings of the before/after evaluation: the training task on the evaluation set."""
    return replace(config.task, dataset=config.eval.dataset or default_eval_set(config.task), limit=config.eval.limit)


def load_set(task: Task, dataset: str | None, what: str) -> list[Problem]:
    """The problems of ``dataset`` for ``what`` (a config key); SetupError naming it when it cannot be used."""
    try:
        problems = task.load_problems(dataset)
    except (ValueError, OSError, ConfigError) as exc:  # DataError is a ValueError
        raise SetupError(f"{what} {dataset!r}: {exc}") from None
    if not problems:
        raise SetupError(f"{what} {dataset!r} holds no problems (after task.exclude / limit)")
    return problems


def check_model(model: str) -> None:
    """A local model directory or a hub id that resolves (``prover.model_check``, as the evaluator and
    the search check theirs)."""
    from prover.model_check import ModelNotFound
    from prover.model_check import check_model as find_model

    try:
        find_model(model)
    except ModelNotFound as exc:
        raise SetupError(f"model: {exc}") from None


def check_report_to(report_to: list[str]) -> None:
    """Every ``grpo.report_to`` integration is known to transformers and installed."""
    from transformers.integrations import integration_utils

    known = sorted(integration_utils.INTEGRATION_TO_CALLBACK)
    for name in report_to:
        if name not in integration_utils.INTEGRATION_TO_CALLBACK:
            raise SetupError(f"grpo.report_to: unknown integration {name!r}; choose from none, all, {', '.join(known)}")
        available = getattr(integration_utils, f"is_{name}_available", None)
        if available is None:
            available = lambda n=name: importlib.util.find_spec(n) is not None  # noqa: E731
        if not available():
            hint = (
                f"pip install -e '.[{REPORTING_EXTRAS[name]}]'"
                if name in REPORTING_EXTRAS
                else f"install the {name} package"
            )
            raise SetupError(f"grpo.report_to: {name} is not installed ({hint}), or set --grpo.report_to none")


def check_lean(config: TrainConfig) -> None:
    """The Lean project and its REPL binary exist (the verifier would fail on them after the model loads)."""
    from prover.verifier.errors import LeanSetupError
    from prover.verifier.lean_project import find_lean_project, find_repl

    try:
        find_repl(config.verifier, find_lean_project(config.verifier))
    except LeanSetupError as exc:
        raise SetupError(f"verifier: {exc}") from None


def check_training_setup(config: TrainConfig) -> Setup:
    """Check every input of a training run; returns the task and the training problems."""
    try:
        task = make_task(config.task)
    except (ValueError, ConfigError) as exc:
        raise SetupError(f"task: {exc}") from None
    train = load_set(task, config.task.dataset, "task.dataset")
    if config.eval.enabled:
        eval_task = make_task(eval_task_config(config))
        load_set(eval_task, eval_task.config.dataset, "eval.dataset")
    if config.rank_bias.enabled:
        load_set(task, config.rank_bias.dataset or config.task.dataset, "rank_bias.dataset")
    if config.model:
        check_model(config.model)
    elif not hasattr(task, "ensure_base_model"):
        raise SetupError(f"model is required for task {task.name!r}: pass --model <path or hub id>")
    check_report_to(list(config.grpo.report_to or []))
    if config.task.name == "lean":
        check_lean(config)
    return Setup(task=task, train_problems=train)
