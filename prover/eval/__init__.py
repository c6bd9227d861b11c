"""Evaluation: sample, verify, and report pass@k with intervals that can be compared across runs.

``evaluate(task, sampler, verifier, problems, samples=..., run_dir=...)`` is the Python API;
``python -m prover.evaluate`` the command line (``prover.evaluate.run(EvalConfig)`` in between).
"""

from prover.eval.config import EvalConfig
from prover.eval.passk import Interval, bootstrap_means, pass_at_k
from prover.eval.runner import EvalError, evaluate, problem_seed
from prover.eval.summary import Summary, summarize

__all__ = [
    "EvalConfig",
    "EvalError",
    "Interval",
    "Summary",
    "bootstrap_means",
    "evaluate",
    "pass_at_k",
    "problem_seed",
    "summarize",
]
