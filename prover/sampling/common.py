"""What both backends must do the same way, so that their samples and log-probs are comparable."""

from __future__ import annotations

from typing import Any

from prover.sampling.base import SamplingParams


def check_params(params: SamplingParams) -> None:
    """Reject parameters neither backend can honour, naming the field."""
    if params.n < 1:
        raise ValueError(f"SamplingParams.n must be >= 1, got {params.n}")
    if params.max_tokens < 1:
        raise ValueError(f"SamplingParams.max_tokens must be >= 1, got {params.max_tokens}")
    if params.temperature < 0:
        raise ValueError(f"SamplingParams.temperature must be >= 0 (0 = greedy), got {params.temperature}")
    if not 0 < params.top_p <= 1:
        raise ValueError(f"SamplingParams.top_p must be in (0, 1], got {params.top_p}")
    if any(not s for s in params.stop):
        raise ValueError("SamplingParams.stop holds an empty string")


def encode_prompts(tokenizer: Any, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt. BOS is added unless the prompt text already starts with it (a
    rendered chat template usually does), so that no backend ever sees a doubled BOS."""
    bos = getattr(tokenizer, "bos_token", None)
    ids = []
    for prompt in prompts:
        add_special = not (bos and prompt.startswith(bos))
        ids.append(tokenizer(prompt, add_special_tokens=add_special)["input_ids"])
    return ids
