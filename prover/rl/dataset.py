"""Problems as the rows TRL's GRPOTrainer trains on: the prompt plus the columns the reward needs."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from datasets import Dataset

from prover.data.problem import Problem
from prover.tasks.base import Task

logger = logging.getLogger(__name__)


def build_dataset(task: Task, problems: Sequence[Problem], tokenizer, max_prompt_tokens: int | None = None) -> Dataset:
    """One row per problem: ``prompt`` (the task's text), ``name``, ``statement``, ``header``.

    TRL 1.16 does not truncate prompts, so problems whose prompt exceeds ``max_prompt_tokens``
    (counted as TRL tokenizes them) are left out and named in the log, as the reference does.
    """
    rows, too_long = [], []
    for problem in problems:
        prompt = task.build_prompt(problem)
        if max_prompt_tokens and len(tokenizer(text=prompt)["input_ids"]) > max_prompt_tokens:
            too_long.append(problem.name)
            continue
        rows.append({"prompt": prompt, "name": problem.name, "statement": problem.statement, "header": problem.header})
    if too_long:
        logger.warning("left out %d of %d problems whose prompt exceeds %d tokens: %s%s", len(too_long), len(problems),
                       max_prompt_tokens, ", ".join(too_long[:10]), " ..." if len(too_long) > 10 else "")
    if not rows:
        raise ValueError(f"no training problems left (of {len(problems)}; max_prompt_tokens={max_prompt_tokens})")
    return Dataset.from_list(rows)
