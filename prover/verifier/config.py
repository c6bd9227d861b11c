"""Settings of the verifier: where Lean is, how many workers, the limits and the soundness policy."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal


def default_workers() -> int:
    return max(1, (os.cpu_count() or 2) - 1)


@dataclass
class VerifierConfig:
    backend: Literal["local", "ray", "http"] = field(
        default="local",
        metadata={
            "help": "local: a REPL pool in this process; ray: pools on Ray actors; http: a verification service at `url` (python -m prover.verify serve)"
        },
    )
    url: str | None = field(
        default=None,
        metadata={
            "help": "backend=http: the service's base URL, e.g. http://10.0.0.5:8000 (API key from $LEAN_SERVER_API_KEY)"
        },
    )
    lean_project: str | None = field(
        default=None, metadata={"help": "Lake project with Mathlib and the REPL built; default $PROVER_LEAN_PROJECT"}
    )
    repl_path: str | None = field(
        default=None, metadata={"help": "REPL binary; default <lean_project>/.lake/packages/REPL/.lake/build/bin/repl"}
    )
    repl_command: list[str] | None = field(
        default=None,
        metadata={
            "help": "full command that starts one REPL (overrides lean_project/repl_path; tests use the REPL double)"
        },
    )
    workers: int = field(default_factory=default_workers, metadata={"help": "REPL processes (default: CPU count - 1)"})
    timeout: float = field(
        default=300.0,
        metadata={"help": "wall seconds per proof before the worker is killed and the verdict is timeout"},
    )
    start_timeout: float = field(
        default=600.0,
        metadata={"help": "wall seconds allowed for a worker to start and check the header (import Mathlib)"},
    )
    memory_limit_mb: int = field(
        default=16384,
        metadata={"help": "resident memory above which a worker is recycled after its check; 0 = no limit"},
    )
    address_space_mb: int = field(
        default=0, metadata={"help": "RLIMIT_AS per worker; 0 = none (Mathlib needs > 9 GB of address space)"}
    )
    cpu_seconds: int = field(default=0, metadata={"help": "RLIMIT_CPU per worker process; 0 = none"})
    max_checks_per_worker: int = field(
        default=500,
        metadata={"help": "recycle a worker after this many checks (long-lived REPLs keep every environment)"},
    )
    max_headers: int = field(default=4, metadata={"help": "distinct headers kept warm at once (LRU)"})
    sandbox: Literal["auto", "bwrap", "unshare", "none"] = field(
        default="auto", metadata={"help": "auto: bwrap if present, else unshare -n, else none"}
    )
    cache_path: str | None = field(
        default=None, metadata={"help": "sqlite file that keeps verdicts across runs; None = memory only"}
    )
    allow_native: bool = field(
        default=False,
        metadata={"help": "accept native_decide / decide +native / Lean.ofReduceBool (trusts the compiler)"},
    )
    axiom_allowlist: list[str] = field(
        default_factory=lambda: ["propext", "Classical.choice", "Quot.sound"],
        metadata={"help": "axioms a proof may depend on"},
    )
    ray_address: str | None = field(
        default=None, metadata={"help": "Ray cluster address for backend=ray (default: auto)"}
    )
    ray_cpus_per_actor: int = field(default=8, metadata={"help": "CPUs (REPL workers) per Ray verifier actor"})
    check_memory_mb: int = field(
        default=24576,
        metadata={
            "help": "resident memory (MB) at which a running check is stopped: verdict timeout, check=memory (one miniF2F proof once took 170 GB); 0 = none"
        },
    )
    max_open_files: int = field(default=4096, metadata={"help": "RLIMIT_NOFILE per worker"})
    max_processes: int = field(
        default=1024,
        metadata={
            "help": "processes and threads per worker (cgroup pids.max where the machine offers it, and RLIMIT_NPROC under the worker's own uid or user namespace; under sandbox=none as a non-root user RLIMIT_NPROC counts all of that user's processes); Lean starts about one thread per core; 0 = none"
        },
    )
    max_file_mb: int = field(
        default=1024,
        metadata={"help": "RLIMIT_FSIZE per worker (MB): the largest file a worker may write, its stderr log included"},
    )
    max_response_mb: int = field(
        default=64, metadata={"help": "largest REPL answer read (MB); a larger one counts as a broken worker"}
    )
    tmpfs_mb: int = field(
        default=256,
        metadata={
            "help": "size (MB) of each of the fresh RAM-backed /tmp, /dev/shm and /run inside bwrap; what a check writes there counts against the memory limits, and a fresh worker follows such a check"
        },
    )
    scratch_dir: str | None = field(
        default=None,
        metadata={"help": "where workers get their private scratch directories (default: the system temp dir)"},
    )
    max_pending: int = field(
        default=0,
        metadata={
            "help": "requests submitted with submit() that may wait at once before submit() blocks; 0 = 8 x workers"
        },
    )

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"workers={self.workers}: need at least 1 REPL worker")
        for name in ("timeout", "start_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be a positive number of seconds")
        if self.max_checks_per_worker < 1 or self.max_headers < 1:
            raise ValueError(
                f"max_checks_per_worker={self.max_checks_per_worker}, max_headers={self.max_headers}: both must be >= 1"
            )
        for name in (
            "memory_limit_mb",
            "check_memory_mb",
            "address_space_mb",
            "cpu_seconds",
            "max_open_files",
            "max_processes",
            "max_file_mb",
            "max_pending",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= 0 (0 = no limit)")
        if self.tmpfs_mb < 1:
            raise ValueError(f"tmpfs_mb={self.tmpfs_mb}: the sandbox's /tmp needs at least 1 MB")
        if self.max_response_mb < 1:
            raise ValueError(f"max_response_mb={self.max_response_mb}: must be >= 1")
        if self.backend == "http" and not self.url:
            raise ValueError(
                "backend=http needs url: the verification service's address, e.g. --verifier.url http://127.0.0.1:8000"
            )
        if self.repl_command is not None and not self.repl_command:
            raise ValueError("repl_command is empty: give the full command line or leave it unset")

    def resolved_lean_project(self) -> str | None:
        return self.lean_project or os.environ.get("PROVER_LEAN_PROJECT") or None

    def effective_axiom_allowlist(self) -> set[str]:
        """The allowlist, plus the compiler-trust axioms when native evaluation is allowed."""
        allowed = set(self.axiom_allowlist)
        if self.allow_native:
            allowed |= NATIVE_AXIOMS
        return allowed


# What `native_decide` / `decide +native` proofs depend on (Lean.trustCompiler from Lean v4.17 on).
NATIVE_AXIOMS = frozenset({"Lean.ofReduceBool", "Lean.ofReduceNat", "Lean.trustCompiler"})


def lean_header(max_heartbeats: int) -> str:
    """The header miniF2F and Lean Workbook statements are checked under, with ``set_option
    maxHeartbeats N`` (0: no limit)."""
    return (
        f"import Mathlib\nimport Aesop\n\nset_option maxHeartbeats {max_heartbeats}\n\n"
        "open BigOperators Real Nat Topology Rat\n\n"
    )


# The header of each pin profile (scripts/setup_lean.sh --profile): what its provers wrote both in
# the prompt and in the checked file, `maxHeartbeats 0` in both: DeepSeek-Prover-V1.5's
# LEAN4_DEFAULT_HEADER (prover/utils.py; Goedel-Prover V1 and V2 use the same) and the header of
# Kimina-Prover-Preview's released miniF2F solutions (v4.15.0); the paper's release does the same.
PROFILE_HEADERS = {"deepseek-v1.5": lean_header(0), "v4.15.0": lean_header(0)}
# A bounded limit, for cheaper checking: Lean stops a runaway proof with a deterministic "maximum
# heartbeats" error long before the wall-clock timeout (one miniF2F proof under maxHeartbeats 0 once
# took ~170 GB and 1,236 s). It is not what the provers were trained and scored with: a proof that
# needs more than this is rejected here although their setup accepts it.
BOUNDED_HEARTBEATS = 400000
# Headers by name (`header: bounded` in task.options; prover.data.load_problems resolves the names).
HEADERS = {**PROFILE_HEADERS, "bounded": lean_header(BOUNDED_HEARTBEATS)}
DEFAULT_HEADER = PROFILE_HEADERS["deepseek-v1.5"]
