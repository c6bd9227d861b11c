"""Proof checking: the sandboxed Lean REPL pool and its soundness layers."""

from collections.abc import Iterable

from prover.verifier.base import Verifier
from prover.verifier.config import DEFAULT_HEADER, VerifierConfig
from prover.verifier.errors import LeanSetupError, PoolClosedError, VerifierError
from prover.verifier.pool import LeanPool
from prover.verifier.verdict import ProofRequest, Status, Verdict

__all__ = [
    "DEFAULT_HEADER",
    "LeanPool",
    "LeanSetupError",
    "PoolClosedError",
    "ProofRequest",
    "Status",
    "Verdict",
    "Verifier",
    "VerifierConfig",
    "VerifierError",
    "make_verifier",
]


def make_verifier(config: VerifierConfig | None = None, headers: Iterable[str] = ()) -> Verifier:
    """A ready verifier for ``config``: the local REPL pool, Ray actors (``backend == "ray"``), or the
    verification service at ``config.url`` (``backend == "http"``).

    ``headers`` are pre-warmed (workers started and the header loaded) before this returns.
    """
    config = config or VerifierConfig()
    if config.backend == "ray":
        from prover.verifier.ray_backend import RayVerifier  # optional extra: imports ray

        return RayVerifier(config, headers=headers)
    if config.backend == "http":
        from prover.verifier.http import RemoteVerifier  # optional extra: imports httpx

        return RemoteVerifier(config, headers=headers)
    return LeanPool(config, headers=headers)
