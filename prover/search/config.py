"""Settings of ``python -m prover.search``: what to prove, how to search, and the task, sampler and
verifier sections shared with training and evaluation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from prover.sampling.config import SamplerConfig
from prover.tasks.base import TaskConfig
from prover.verifier.config import VerifierConfig

STRATEGIES = ("whole", "resume", "best-first")


@dataclass
class ResumeConfig:
    width: int = field(
        default=2,
        metadata={
            "help": "prompts per round: a fresh start plus the width - 1 longest error-free prefixes not yet continued"
        },
    )

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"resume.width must be >= 1, got {self.width}")


@dataclass
class BestFirstConfig:
    backend: Literal["repl", "dojo"] = field(
        default="repl",
        metadata={
            "help": "where proof states come from: repl (the Lean REPL's tactic mode, started from the verifier section) or dojo (LeanDojo, pip install -e .[dojo])"
        },
    )
    tactics_per_expansion: int = field(default=8, metadata={"help": "tactics sampled for each expanded proof state"})
    tactic_max_tokens: int = field(
        default=128, metadata={"help": "token limit of one sampled tactic (a tactic is one line)"}
    )
    max_depth: int = field(
        default=32, metadata={"help": "tactics in one proof at most; deeper states are not expanded"}
    )
    tactic_timeout: float = field(
        default=60.0,
        metadata={
            "help": "wall seconds for one tactic; past it the tactic counts as failed and the REPL is restarted (LeanDojo: the theorem is reopened)"
        },
    )
    dojo_repo: str | None = field(
        default=None, metadata={"help": "dojo: URL or path of the traced Lean repository that holds the theorem"}
    )
    dojo_commit: str | None = field(default=None, metadata={"help": "dojo: commit of dojo_repo"})
    dojo_file: str | None = field(default=None, metadata={"help": "dojo: file of the theorem inside dojo_repo"})

    def __post_init__(self) -> None:
        for name in ("tactics_per_expansion", "tactic_max_tokens", "max_depth"):
            if getattr(self, name) < 1:
                raise ValueError(f"best_first.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class SearchConfig:
    theorem: str | None = field(default=None, metadata={"help": "the statement to prove, ending with ':= by'"})
    file: str | None = field(default=None, metadata={"help": "a file holding the statement"})
    name: str | None = field(
        default=None,
        metadata={"help": "with --dataset: the problem to prove; otherwise the name given to --theorem/--file"},
    )
    header: str | None = field(
        default=None, metadata={"help": "file whose text replaces the problem's header (imports, options, opens)"}
    )
    json: bool = field(default=False, metadata={"help": "print one JSON object instead of text (non-interactive)"})
    strategy: Literal["whole", "resume", "best-first"] = field(
        default="whole",
        metadata={
            "help": "whole: whole proofs in rounds; resume: truncate at Lean's first error and continue from there (DeepSeek-Prover-V1.5); best-first: tactic-level search over proof states"
        },
    )
    budget: int = field(
        default=64, metadata={"help": "whole/resume: completions sampled; best-first: proof states expanded"}
    )
    time_limit: float = field(default=600.0, metadata={"help": "wall seconds per theorem; 0 = no limit"})
    round_size: int = field(
        default=16, metadata={"help": "whole/resume: completions sampled (then verified) per round"}
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass"})
    max_tokens: int = field(default=1024, metadata={"help": "whole/resume: token limit of one completion"})
    seed: int = field(
        default=0, metadata={"help": "round r samples with seed + r: the same settings give the same search"}
    )
    statement_check: Literal["auto", "repl", "none"] = field(
        default="auto",
        metadata={
            "help": "check the statement with `sorry` in the Lean REPL before sampling; auto: when a REPL is configured (verifier.repl_command or a Lean project)"
        },
    )
    run_dir: str | None = field(
        default=None,
        metadata={"help": "record run info and every verified attempt here; a rerun with the same directory resumes"},
    )
    history_file: str = field(
        default="~/.cache/prover/search_history", metadata={"help": "interactive: readline history"}
    )
    resume: ResumeConfig = field(default_factory=ResumeConfig)
    best_first: BestFirstConfig = field(default_factory=BestFirstConfig)
    task: TaskConfig = field(default_factory=lambda: TaskConfig(name="lean"))
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)

    def __post_init__(self) -> None:
        given = [k for k in ("theorem", "file") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError("give the statement once: --theorem or --file, not both")
        if given and self.task.dataset and self.name:
            raise ValueError(f"--{given[0]} and --dataset/--name both name a theorem; give one")
        if self.budget < 1 or self.round_size < 1 or self.max_tokens < 1:
            raise ValueError(
                f"budget, round_size and max_tokens must be >= 1, got {self.budget}, {self.round_size}, {self.max_tokens}"
            )
        if self.time_limit < 0:
            raise ValueError(f"time_limit must be >= 0 (0 = no limit), got {self.time_limit}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")

    def wants_interactive(self) -> bool:
        """No theorem named anywhere: the session asks for statements."""
        return not (self.theorem or self.file or self.name)
