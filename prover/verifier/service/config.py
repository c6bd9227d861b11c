"""Settings of the verification service: where it listens, who may call it, how much it takes at once."""

from __future__ import annotations

from dataclasses import dataclass, field

from prover.verifier.config import VerifierConfig

API_KEY_ENV = "LEAN_SERVER_API_KEY"  # the variable Kimina's server and kimina-client both read


@dataclass
class ServiceConfig:
    host: str = field(
        default="127.0.0.1",
        metadata={"help": "address to listen on; 0.0.0.0 exposes the service to the network (set an API key)"},
    )
    port: int = field(
        default=8000, metadata={"help": "TCP port (8000: kimina-client's default); 0 picks a free one and prints it"}
    )
    api_key: str | None = field(
        default=None,
        metadata={
            "help": f"key callers must send as `Authorization: Bearer KEY`; default ${API_KEY_ENV}; unset: no key needed"
        },
    )
    max_batch: int = field(default=256, metadata={"help": "snippets or proofs per request; more is answered 413"})
    max_snippet_bytes: int = field(
        default=262144, metadata={"help": "bytes per snippet (or header + statement + proof); more is answered 413"}
    )
    max_body_mb: int = field(
        default=64, metadata={"help": "request body size (MB); more is answered 413 before it is read"}
    )
    max_queue: int = field(
        default=2048,
        metadata={
            "help": "proofs admitted and not yet answered; a request that would pass it is answered 503 with Retry-After"
        },
    )
    retry_after: int = field(
        default=5, metadata={"help": "seconds a 503 (queue full, shutting down) tells the caller to wait"}
    )
    max_theorems: int = field(
        default=8,
        metadata={"help": "theorems per snippet, each checked with its own axioms (request k re-checks theorems 1..k)"},
    )
    shutdown_grace: float = field(
        default=30.0,
        metadata={
            "help": "seconds SIGTERM/SIGINT waits for accepted requests; then their unfinished proofs are answered as errors"
        },
    )
    warm_headers: list[str] = field(
        default_factory=list,
        metadata={"help": "headers to start workers for before listening (e.g. 'import Mathlib\\nimport Aesop\\n')"},
    )

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port={self.port}: must be 0..65535")
        for name in ("max_batch", "max_snippet_bytes", "max_body_mb", "max_queue", "retry_after", "max_theorems"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 1")
        if self.max_queue < self.max_batch:
            raise ValueError(
                f"max_queue={self.max_queue} < max_batch={self.max_batch}: a full request could never be admitted"
            )
        if self.shutdown_grace < 0:
            raise ValueError(f"shutdown_grace={self.shutdown_grace}: must be >= 0 seconds")


@dataclass
class ServeConfig:
    """``python -m prover.verify serve``: the service and the verifier behind it (local pool or Ray)."""

    service: ServiceConfig = field(default_factory=ServiceConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
