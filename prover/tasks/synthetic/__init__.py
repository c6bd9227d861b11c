"""The synthetic proving task: ``start S goal G steps B`` theorems, an exact checker and a tiny
base model trained here, so that the whole pipeline runs on a CPU in minutes.

Importing this package does not import torch; ``ensure_base_model`` does when it trains.
"""

from prover.tasks.synthetic.base_model import BaseModelConfig, ensure_base_model
from prover.tasks.synthetic.checker import SyntheticVerifier, check_proof
from prover.tasks.synthetic.task import SyntheticOptions, SyntheticTask

__all__ = [
    "BaseModelConfig",
    "SyntheticOptions",
    "SyntheticTask",
    "SyntheticVerifier",
    "check_proof",
    "ensure_base_model",
]
