"""Problems as the rows TRL's GRPOTrainer trains on: the prompt plus the columns the reward needs."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from datasets import Dataset

from prover.data.problem import Problem
from prover.tasks.base import Task

logger = logging.getLogger(__name__)


def adds_bos(tokenizer) -> bool:
    """Whether the tokenizer puts BOS in front of every text by itself (DeepSeek's LlamaTokenizerFast
    does: ``add_bos_token: true``)."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    return bos_id is not None and bos_id in tokenizer(text="")["input_ids"]


def trl_prompt(text: str, tokenizer) -> str:
    """The prompt text to hand TRL, which tokenizes it with the tokenizer's special tokens on.

    DeepSeek-Prover-V1.5 samples (vLLM, special tokens added) from BOS + the prompt text, and so do
    ``prover.sampling`` and the evaluation. A rendered chat template already begins with the BOS
    text; with a tokenizer that adds its own BOS, TRL would then see two, so the text's is dropped.
    """
    bos = getattr(tokenizer, "bos_token", None)
    if bos and text.startswith(bos) and adds_bos(tokenizer):
        return text[len(bos) :]
    return text


def build_dataset(task: Task, problems: Sequence[Problem], tokenizer, max_prompt_tokens: int | None = None) -> Dataset:
    """One row per problem: ``prompt`` (the task's text, see ``trl_prompt``), ``name``, ``statement``, ``header``.

    TRL 1.16 does not truncate prompts, so problems whose prompt exceeds ``max_prompt_tokens``
    (counted as TRL tokenizes them) are left out and named in the log, as the reference does.
    """
    rows, too_long = [], []
    for problem in problems:
        prompt = trl_prompt(task.build_prompt(problem), tokenizer)
        if max_prompt_tokens and len(tokenizer(text=prompt)["input_ids"]) > max_prompt_tokens:
            too_long.append(problem.name)
            continue
        rows.append({"prompt": prompt, "name": problem.name, "statement": problem.statement, "header": problem.header})
    if too_long:
        logger.warning(
            "left out %d of %d problems whose prompt exceeds %d tokens: %s%s",
            len(too_long),
            len(problems),
            max_prompt_tokens,
            ", ".join(too_long[:10]),
            " ..." if len(too_long) > 10 else "",
        )
    if not rows:
        raise ValueError(f"no training problems left (of {len(problems)}; max_prompt_tokens={max_prompt_tokens})")
    return Dataset.from_list(rows)
