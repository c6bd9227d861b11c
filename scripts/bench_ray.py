"""What Ray costs: the same batch of proofs through the local REPL pool and through Ray verifier actors
with the same total number of REPL workers, the REPL double standing in for Lean at a fixed cost per
proof spent sleeping (target: Ray adds <= 10% at batches of 512).

    python scripts/bench_ray.py                                  # local Ray, 8 workers, 512 proofs, ~2 min
    python scripts/bench_ray.py --batch 2048 --cost 0.2 --ray_address auto --cpus_per_actor 16

Without ``--ray_address`` a private Ray instance is started here with ``workers`` logical CPUs.
Results go to ``<out>/bench_ray.json`` beside the run info (config, versions, commit).
"""

from __future__ import annotations

import json
import logging
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from prover.config import help_text, load_config
from prover.runinfo import write_run_info

logger = logging.getLogger("bench_ray")
DOUBLE = Path(__file__).resolve().parents[1] / "tests" / "repl_double.py"
HEADER = "import Mathlib\nimport Aesop\n"
STATEMENT = "theorem t (a b : ℝ) (h : a = b) : b = a := by\n"


@dataclass
class BenchConfig:
    batch: int = field(default=512, metadata={"help": "proofs per batch (all distinct, so no cache hits)"})
    cost: float = field(default=0.1, metadata={"help": "seconds the REPL double sleeps per proof"})
    workers: int = field(
        default=8, metadata={"help": "REPL workers in all: the local pool's, and summed over the Ray actors"}
    )
    cpus_per_actor: int = field(
        default=4, metadata={"help": "REPL workers per Ray actor (workers / cpus_per_actor actors)"}
    )
    repeats: int = field(
        default=3,
        metadata={"help": "timed batches per backend, taking turns (the median is reported), after one warm-up each"},
    )
    ray_address: str | None = field(
        default=None, metadata={"help": "existing Ray cluster (e.g. auto); default: start a private one here"}
    )
    out: str = field(default="runs/bench_ray", metadata={"help": "run directory for results and run info"})

    def __post_init__(self) -> None:
        if self.workers % self.cpus_per_actor:
            raise ValueError(f"workers={self.workers} is not a multiple of cpus_per_actor={self.cpus_per_actor}")


def make_parser():
    import argparse

    return argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="options (--config x.yaml, then --name value):\n" + help_text(BenchConfig),
    )


def batches(size: int):
    """Fresh batches of distinct proofs, forever (a repeated proof would be a cache hit)."""
    while True:
        run = uuid.uuid4().hex[:8]
        from prover.verifier import ProofRequest

        yield [ProofRequest(STATEMENT, f"  exact h.symm -- {run} {i}", HEADER, "t") for i in range(size)]


def time_batches(verifiers: dict, config: BenchConfig) -> dict:
    """Median seconds per batch of each verifier, after one warm-up batch each; they take turns."""
    fresh = batches(config.batch)
    for verifier in verifiers.values():
        verifier.check_batch(next(fresh))
    times: dict[str, list[float]] = {name: [] for name in verifiers}
    for _ in range(config.repeats):
        for name, verifier in verifiers.items():
            requests = next(fresh)
            start = time.perf_counter()
            verdicts = verifier.check_batch(requests)
            times[name].append(time.perf_counter() - start)
            if not all(v.proved for v in verdicts):
                raise RuntimeError(
                    f"{name}: not every proof was proved: {[v.reason for v in verdicts if not v.proved][:3]}"
                )
    return {name: {"seconds": statistics.median(t), "all": t} for name, t in times.items()}


def main(argv: list[str] | None = None) -> dict:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        make_parser().print_help()
        return {}
    config = load_config(BenchConfig, argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import ray

    from prover.verifier import LeanPool, VerifierConfig
    from prover.verifier.ray_backend import RayVerifier

    out = Path(config.out)
    write_run_info(out, config)
    common = {
        "repl_command": [sys.executable, str(DOUBLE), "--cost", str(config.cost)],
        "timeout": 60.0,
        "start_timeout": 60.0,
    }
    if config.ray_address is None:
        ray.init(num_cpus=config.workers, include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=config.ray_address, logging_level=logging.WARNING)
    try:
        with (
            LeanPool(VerifierConfig(workers=config.workers, **common), headers=[HEADER]) as local,
            RayVerifier(
                VerifierConfig(backend="ray", ray_cpus_per_actor=config.cpus_per_actor, **common), headers=[HEADER]
            ) as remote,
        ):
            actors = remote.stats()["actors"]
            if actors * config.cpus_per_actor != config.workers:
                raise RuntimeError(
                    f"Ray started {actors} actors x {config.cpus_per_actor} workers, not "
                    f"{config.workers} workers: the cluster's CPUs do not match --workers"
                )
            results = time_batches({"local": local, "ray": remote}, config)
    finally:
        ray.shutdown()
    ideal = config.batch * config.cost / config.workers
    results.update(
        batch=config.batch,
        cost=config.cost,
        workers=config.workers,
        actors=actors,
        ideal_seconds=ideal,
        overhead=results["ray"]["seconds"] / results["local"]["seconds"] - 1,
    )
    (out / "bench_ray.json").write_text(json.dumps(results, indent=2))

    print(f"{config.batch} proofs x {config.cost:g} s on {config.workers} REPL workers (ideal {ideal:.2f} s per batch)")
    print(f"  local pool          {results['local']['seconds']:7.2f} s")
    print(f"  ray ({actors} actors)      {results['ray']['seconds']:7.2f} s")
    print(f"  Ray overhead: {100 * results['overhead']:+.1f}% (target <= +10%)")
    return results


if __name__ == "__main__":
    main()
