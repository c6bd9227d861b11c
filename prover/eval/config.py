"""Settings of an evaluation run: what to sample, how many, and how to report it.

The nested sections (``task``, ``sampler``, ``verifier``) are the shared configs; the short
top-level flags (``--model``, ``--dataset``) fill them in for the common case. Setting both a short
flag and its nested field to different values is an error rather than a silent pick.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from prover.eval.passk import default_ks
from prover.sampling.config import SamplerConfig
from prover.tasks.base import TaskConfig
from prover.verifier.config import VerifierConfig

# The headline command evaluates miniF2F without naming a task; the synthetic task is
# picked with --task.name synthetic. load_config receives this too, so a YAML ``task:`` section that
# leaves out ``name`` means the same task as no section at all.
DEFAULT_TASK = "lean"


@dataclass
class EvalConfig:
    model: str | None = field(
        default=None, metadata={"help": "local path or hub id of the model (short for --sampler.model)"}
    )
    dataset: str | None = field(
        default=None, metadata={"help": "problem set, e.g. minif2f-test (short for --task.dataset)"}
    )
    samples: int = field(default=32, metadata={"help": "proofs sampled per problem (the N of pass@N)"})
    k: list[int] | None = field(
        default=None,
        metadata={"help": "the k of pass@k to report, e.g. 1,8,32; default powers of 2 up to samples, and samples"},
    )
    seed: int = field(
        default=0, metadata={"help": "run seed; each problem samples with a seed derived from it and the problem name"}
    )
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling mass"})
    max_tokens: int = field(default=2048, metadata={"help": "tokens per completion at most"})
    stop: list[str] | None = field(
        default=None,
        metadata={
            "help": "stop strings (kept in the completion); default: the task's own (the closing fence for Lean continuation prompts)"
        },
    )
    run_dir: str | None = field(
        default=None,
        metadata={
            "help": "where results go; rerunning with the same directory resumes. Default runs/eval/<model>_<dataset>_n<samples>_s<seed>, <model> the model's path or hub id with '--' for '/'"
        },
    )
    chunk_size: int = field(
        default=4,
        metadata={
            "help": "problems sampled before their proofs are handed to the verifier (verification overlaps the next chunk's sampling)"
        },
    )
    error_retries: int = field(
        default=2,
        metadata={
            "help": "re-checks of a proof whose verdict is ERROR (checker failure) before it is recorded as such"
        },
    )
    bootstrap: int = field(
        default=1000, metadata={"help": "bootstrap resamples of problems for the intervals (0: none)"}
    )
    confidence: float = field(default=0.95, metadata={"help": "coverage of the bootstrap intervals"})
    plot: bool = field(default=True, metadata={"help": "write passk.png (pass@k vs k, log x) into the run directory"})
    progress: bool = field(default=True, metadata={"help": "show a progress bar"})
    task: TaskConfig = field(
        default_factory=lambda: TaskConfig(name=DEFAULT_TASK),
        metadata={"help": "problems, prompt format, proof extraction"},
    )
    sampler: SamplerConfig = field(default_factory=SamplerConfig, metadata={"help": "sampling backend and model"})
    verifier: VerifierConfig = field(default_factory=VerifierConfig, metadata={"help": "proof checker settings"})

    def __post_init__(self) -> None:
        self.model = _merge_short("model", self.model, "sampler.model", self.sampler.model)
        self.sampler.model = self.model
        self.dataset = _merge_short("dataset", self.dataset, "task.dataset", self.task.dataset)
        self.task.dataset = self.dataset
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if self.k is None:
            self.k = default_ks(self.samples)
        bad = [k for k in self.k if not 1 <= k <= self.samples]
        if bad:
            raise ValueError(f"k must lie in 1..samples={self.samples}; got k={bad} (raise --samples or drop these k)")
        self.k = sorted(set(self.k))
        for name, value, low in (
            ("max_tokens", self.max_tokens, 1),
            ("chunk_size", self.chunk_size, 1),
            ("error_retries", self.error_retries, 0),
            ("bootstrap", self.bootstrap, 0),
        ):
            if value < low:
                raise ValueError(f"{name} must be >= {low}, got {value}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie in (0, 1), got {self.confidence}")
        if self.temperature < 0 or not 0 < self.top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1, got {self.temperature}, {self.top_p}")

    def resolved_run_dir(self) -> Path:
        """The run directory; the default is a pure function of the settings, so rerunning resumes."""
        if self.run_dir:
            return Path(self.run_dir)
        name = f"{model_label(self.model or 'model')}_{self.dataset or self.task.name}_n{self.samples}_s{self.seed}"
        return Path("runs") / "eval" / re.sub(r"[^A-Za-z0-9._-]+", "-", name)


MAX_LABEL = 80  # characters of a model's label in a directory name; longer paths keep their tail and a hash


def model_label(model: str) -> str:
    """A model's name in a run directory, after its whole path or hub id, parts joined by ``--`` as the
    hub cache does (``runs--grpo--final``, ``deepseek-ai--DeepSeek-Prover-V1.5-RL``): every trained
    model is called ``final``, so the last part alone would put them all in one directory."""
    path = Path(model).expanduser()
    if path.exists():
        path = path.resolve()
        try:
            path = path.relative_to(Path.cwd().resolve())
        except ValueError:  # outside the working directory: the absolute path
            pass
    parts = [p for p in path.parts if p not in ("/", "")]
    label = "--".join(parts) or "model"
    if len(label) > MAX_LABEL:
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
        label = f"{'--'.join(parts[-3:])[-(MAX_LABEL - 9) :]}-{digest}"
    return label


def _merge_short(short: str, short_value: str | None, nested: str, nested_value: str | None) -> str | None:
    if short_value and nested_value and short_value != nested_value:
        raise ValueError(f"--{short} {short_value!r} contradicts --{nested} {nested_value!r}; set one of them")
    return short_value or nested_value
