"""Sampling throughput: generated tokens/s of each backend, and of our vLLM wrapper against a bare
``vllm.LLM.generate`` on the same engine, prompts and sampling parameters (target: the wrapper
within 10% of bare vLLM).

    python scripts/bench_sampling.py                       # tiny random model, CPU, ~2 min
    python scripts/bench_sampling.py --model deepseek-ai/DeepSeek-Prover-V1.5-RL --prompts 64 --n 8 --max_tokens 1024

Results go to ``<out>/bench_sampling.json`` beside the run info (config, versions, commit).
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from prover.config import help_text, load_config
from prover.runinfo import write_run_info

logger = logging.getLogger("bench_sampling")


@dataclass
class BenchConfig:
    model: str | None = field(
        default=None, metadata={"help": "model path or hub id (default: build the tiny random model)"}
    )
    backends: list[str] = field(default_factory=lambda: ["hf", "vllm"], metadata={"help": "backends to time: hf, vllm"})
    dataset: str = field(default="minif2f-test", metadata={"help": "problems whose deepseek-v1.5 prompts are sampled"})
    prompts: int = field(default=8, metadata={"help": "number of prompts"})
    n: int = field(default=4, metadata={"help": "samples per prompt"})
    max_tokens: int = field(
        default=64, metadata={"help": "tokens per sample (no stop strings, so most samples run to it)"}
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus mass"})
    batch_size: int = field(default=32, metadata={"help": "hf backend: sequences generated at once"})
    repeats: int = field(
        default=3, metadata={"help": "timed runs per measurement (the median is reported), after one warm-up"}
    )
    seed: int = field(default=0, metadata={"help": "sampling seed"})
    out: str = field(default="runs/bench_sampling", metadata={"help": "run directory for results and run info"})


def make_parser():
    import argparse

    return argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="options (--config x.yaml, then --name value):\n" + help_text(BenchConfig),
    )


def measure(fns: dict, repeats: int) -> dict:
    """Median wall seconds and tokens of each ``fn() -> tokens`` after one warm-up run each (compile,
    caches). The functions take turns, so none is timed on a warmer machine than the others."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    tokens: dict[str, int] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            tokens[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {
        name: {
            "seconds": statistics.median(times[name]),
            "tokens": tokens[name],
            "tokens_per_s": tokens[name] / statistics.median(times[name]),
        }
        for name in fns
    }


def bench_hf(config: BenchConfig, prompts: list[str], params) -> dict:
    from prover.sampling import SamplerConfig, make_sampler

    with make_sampler(SamplerConfig(backend="hf", model=config.model, batch_size=config.batch_size)) as sampler:
        return measure({"hf": lambda: count(sampler.generate(prompts, params))}, config.repeats)["hf"]


def bench_vllm(config: BenchConfig, prompts: list[str], params) -> dict:
    """Our wrapper and bare ``LLM.generate`` (text prompts, the same vLLM parameters) on one engine."""
    from prover.sampling import SamplerConfig, make_sampler

    with make_sampler(SamplerConfig(backend="vllm", model=config.model)) as sampler:
        bare_params = sampler.sampling_params(params)

        def wrapper() -> int:
            return count(sampler.generate(prompts, params))

        def bare() -> int:
            outputs = sampler.llm.generate(prompts, bare_params, use_tqdm=False)
            return sum(len(o.token_ids) for request in outputs for o in request.outputs)

        out = measure({"wrapper": wrapper, "bare": bare}, config.repeats)
    out["wrapper_over_bare"] = out["wrapper"]["tokens_per_s"] / out["bare"]["tokens_per_s"]
    return out


def count(outputs) -> int:
    return sum(len(c.token_ids) for completions in outputs for c in completions)


def load_prompts(config: BenchConfig) -> list[str]:
    from prover.tasks import TaskConfig, make_task

    task = make_task(TaskConfig(name="lean", dataset=config.dataset, limit=config.prompts))
    return [task.build_prompt(p) for p in task.load_problems()]


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        make_parser().print_help()
        return {}
    config = load_config(BenchConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from prover.sampling import SamplingParams

    out = Path(config.out)
    write_run_info(out, config, seeds={"sampling": config.seed})
    if config.model is None:
        from prover.testing.tiny_model import build_tiny_model

        config.model = str(build_tiny_model(Path(tempfile.mkdtemp(prefix="tiny_model_"))))
    prompts = load_prompts(config)
    params = SamplingParams(
        n=config.n, temperature=config.temperature, top_p=config.top_p, max_tokens=config.max_tokens, seed=config.seed
    )
    results: dict = {"prompts": len(prompts), "n": config.n, "max_tokens": config.max_tokens}
    for backend in config.backends:
        logger.info("timing %s", backend)
        results[backend] = {"hf": bench_hf, "vllm": bench_vllm}[backend](config, prompts, params)
    (out / "bench_sampling.json").write_text(json.dumps(results, indent=2))

    print(f"{len(prompts)} prompts x {config.n} samples x <= {config.max_tokens} tokens, model {config.model}")
    rows = [
        ("hf", results.get("hf")),
        ("vllm wrapper", results.get("vllm", {}).get("wrapper")),
        ("vllm bare", results.get("vllm", {}).get("bare")),
    ]
    for name, r in rows:
        if r:
            print(f"  {name:<13} {r['tokens_per_s']:9.1f} tokens/s  ({r['tokens']} tokens in {r['seconds']:.2f} s)")
    if "vllm" in results:
        print(f"  wrapper / bare vLLM throughput: {results['vllm']['wrapper_over_bare']:.3f}")
    return results


if __name__ == "__main__":
    main()
