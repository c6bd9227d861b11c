"""One sampler interface over vLLM and transformers: prompts in, n scored completions each out."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Literal


@dataclass
class SamplingParams:
    n: int = 1  # completions per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    seed: int | None = None  # same seed, same prompts -> same samples (per backend)
    stop: list[str] = field(default_factory=list)


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    logprob_sum: float  # sum of the sampled tokens' log-probs under the sampling distribution
    logprob_mean: float  # logprob_sum / len(token_ids); the unlikeliness ranking key by default
    finish_reason: Literal["stop", "length"]


class Sampler(abc.ABC):
    """Samples whole completions. Keeps its model loaded between calls."""

    @abc.abstractmethod
    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions for each prompt, in prompt order."""

    def close(self) -> None:
        """Free the model (and GPU memory). Safe to call twice."""

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
