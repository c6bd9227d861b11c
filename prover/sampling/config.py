"""Which sampler to build and how: the backend, the model and the engine's knobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class SamplerConfig:
    backend: Literal["auto", "vllm", "hf"] = field(
        default="auto", metadata={"help": "auto: vLLM on a CUDA GPU, else transformers (hf)"}
    )
    model: str | None = field(default=None, metadata={"help": "local path or hub id of the policy model"})
    dtype: str = field(default="auto", metadata={"help": "auto: bfloat16 on GPU, float32 on CPU"})
    device: str = field(default="auto", metadata={"help": "hf backend: cuda, cpu or auto"})
    batch_size: int = field(default=64, metadata={"help": "hf backend: sequences generated at once"})
    tensor_parallel_size: int = field(default=1, metadata={"help": "vllm: GPUs per model"})
    gpu_memory_utilization: float = field(
        default=0.9, metadata={"help": "vllm: fraction of GPU memory for weights + KV cache"}
    )
    enable_prefix_caching: bool = field(
        default=True, metadata={"help": "vllm: share the KV cache of a prompt among its n samples"}
    )
    max_model_len: int | None = field(
        default=None, metadata={"help": "vllm: prompt + completion tokens (default: the model's)"}
    )
    enforce_eager: bool = field(default=False, metadata={"help": "vllm: no CUDA graphs (forced on CPU)"})
