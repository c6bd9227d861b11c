"""Settings of the verifier: where Lean is, how many workers, the limits and the soundness policy."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal


def default_workers() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass
class VerifierConfig:
    backend: Literal["local", "ray"] = field(default="local", metadata={"help": "local: a REPL pool in this process; ray: pools on Ray actors"})
    lean_project: str | None = field(default=None, metadata={"help": "Lake project with Mathlib and the REPL built; default $PROVER_LEAN_PROJECT"})
    repl_path: str | None = field(default=None, metadata={"help": "REPL binary; default <lean_project>/.lake/packages/REPL/.lake/build/bin/repl"})
    repl_command: list[str] | None = field(default=None, metadata={"help": "full command that starts one REPL (overrides lean_project/repl_path; tests use the REPL double)"})
    workers: int = field(default_factory=default_workers, metadata={"help": "REPL processes (default: CPU count - 1)"})
    timeout: float = field(default=300.0, metadata={"help": "wall seconds per proof before the worker is killed and the verdict is timeout"})
    start_timeout: float = field(default=600.0, metadata={"help": "wall seconds allowed for a worker to start and check the header (import Mathlib)"})
    memory_limit_mb: int = field(default=16384, metadata={"help": "resident memory above which a worker is recycled after its check; 0 = no limit"})
    address_space_mb: int = field(default=0, metadata={"help": "RLIMIT_AS per worker; 0 = none (Mathlib needs > 9 GB of address space)"})
    cpu_seconds: int = field(default=0, metadata={"help": "RLIMIT_CPU per worker process; 0 = none"})
    max_checks_per_worker: int = field(default=500, metadata={"help": "recycle a worker after this many checks (long-lived REPLs keep every environment)"})
    max_headers: int = field(default=4, metadata={"help": "distinct headers kept warm at once (LRU)"})
    sandbox: Literal["auto", "bwrap", "unshare", "none"] = field(default="auto", metadata={"help": "auto: bwrap if present, else unshare -n, else none"})
    cache_path: str | None = field(default=None, metadata={"help": "sqlite file that keeps verdicts across runs; None = memory only"})
    allow_native: bool = field(default=False, metadata={"help": "accept native_decide / decide +native / Lean.ofReduceBool (trusts the compiler)"})
    axiom_allowlist: list[str] = field(default_factory=lambda: ["propext", "Classical.choice", "Quot.sound"], metadata={"help": "axioms a proof may depend on"})
    ray_address: str | None = field(default=None, metadata={"help": "Ray cluster address for backend=ray (default: auto)"})
    ray_cpus_per_actor: int = field(default=8, metadata={"help": "CPUs (REPL workers) per Ray verifier actor"})

    def resolved_lean_project(self) -> str | None:
        return self.lean_project or os.environ.get("PROVER_LEAN_PROJECT") or None
