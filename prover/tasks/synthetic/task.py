"""``SyntheticTask``: the CPU default task, with theorems a tiny model can learn and an exact checker."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from prover.config import from_dict
from prover.data.problem import Problem
from prover.tasks.base import Task, TaskConfig
from prover.tasks.synthetic.base_model import BaseModelConfig
from prover.tasks.synthetic.checker import SyntheticVerifier, parse_statement
from prover.tasks.synthetic.generator import END, OPS, Theorem, all_theorems, count_proofs, split_theorems
from prover.verifier.base import Verifier
from prover.verifier.config import VerifierConfig

DATASETS = ("train", "test", "probe")


@dataclass
class SyntheticOptions:
    """``task.options`` of the synthetic task. Changing a theorem setting changes the theorems,
    and with them the cached base model."""

    seed: int = field(
        default=0, metadata={"help": "seed of the train/test split (theorems are enumerated, then shuffled)"}
    )
    max_value: int = field(
        default=64, metadata={"help": "largest value a proof may reach; the vocabulary holds 0..max_value"}
    )
    start_max: int = field(default=20, metadata={"help": "starts are 1..start_max"})
    min_budget: int = field(default=2, metadata={"help": "fewest steps a theorem allows"})
    max_budget: int = field(
        default=6, metadata={"help": "most steps a theorem allows; goals lie within start + 3 * max_budget"}
    )
    min_gap: int = field(default=1, metadata={"help": "smallest goal - start"})
    test_size: int = field(default=192, metadata={"help": "theorems in the test set"})
    train_size: int = field(default=512, metadata={"help": "theorems in the train set (disjoint from test)"})
    probe_size: int = field(
        default=64,
        metadata={"help": "theorems in the probe set: the first train theorems (for diagnostics during training)"},
    )
    rare_fraction: float = field(
        default=0.15, metadata={"help": "fraction of train and test theorems that only a multiplication proves"}
    )
    base_model: BaseModelConfig = field(
        default_factory=BaseModelConfig, metadata={"help": "the supervised base model (see ensure_base_model)"}
    )

    def __post_init__(self):
        if not 0.0 <= self.rare_fraction <= 1.0:
            raise ValueError(f"rare_fraction={self.rare_fraction} must lie in [0, 1]")
        if not 1 <= self.min_budget <= self.max_budget:
            raise ValueError(
                f"need 1 <= min_budget <= max_budget, got min_budget={self.min_budget}, max_budget={self.max_budget}"
            )
        if self.start_max < 1 or self.min_gap < 1:
            raise ValueError(f"start_max={self.start_max} and min_gap={self.min_gap} must be >= 1")
        if self.start_max + self.min_gap > self.max_value:
            raise ValueError(
                f"start_max + min_gap = {self.start_max + self.min_gap} exceeds max_value={self.max_value}: no theorem fits"
            )
        if self.probe_size > self.train_size:
            raise ValueError(
                f"probe_size={self.probe_size} > train_size={self.train_size}: the probe set is part of train"
            )


def to_problem(theorem: Theorem, split: str = "") -> Problem:
    counts = count_proofs(theorem)
    return Problem(
        name=theorem.name,
        statement=theorem.statement,
        informal=f"Turn {theorem.start} into {theorem.goal} with at most {theorem.budget} of {' '.join(OPS)}.",
        split=split,
        extra={
            "start": theorem.start,
            "goal": theorem.goal,
            "budget": theorem.budget,
            "kind": theorem.kind,
            "additive_proofs": counts["additive"],
            "multiplicative_proofs": counts["multiplicative"],
        },
    )


class SyntheticTask(Task):
    """Prompt ``start S goal G steps B : `` ; completion ``op value ... qed``; exact checker."""

    name = "synthetic"

    def __init__(self, config: TaskConfig | None = None):
        self.config = config or TaskConfig(name="synthetic")
        self.options = from_dict(SyntheticOptions, self.config.options, "task.options")

    @cached_property
    def splits(self) -> dict[str, list[Theorem]]:
        o = self.options
        theorems = all_theorems(o.max_value, o.start_max, o.min_budget, o.max_budget, o.min_gap)
        splits = split_theorems(theorems, o.seed, o.test_size, o.train_size, o.rare_fraction)
        splits["probe"] = splits["train"][: o.probe_size]
        return splits

    def load_problems(self, dataset: str | None = None) -> list[Problem]:
        dataset = dataset or self.config.dataset or "train"
        if dataset not in DATASETS:
            raise ValueError(f"synthetic task: unknown dataset {dataset!r}; choose one of {list(DATASETS)}")
        excluded = set(self.config.exclude)
        problems = [to_problem(t, dataset) for t in self.splits[dataset] if t.name not in excluded]
        return problems[: self.config.limit] if self.config.limit is not None else problems

    def build_prompt(self, problem: Problem) -> str:
        # The trailing space keeps prompt + completion text tokenizable as one string.
        return f"{problem.statement} : "

    def extract_proof(self, completion: str, problem: Problem | None = None) -> str | None:
        tokens = completion.split()
        if END in tokens:
            return " ".join(tokens[: tokens.index(END)])
        return None if self.config.require_closing_fence else " ".join(tokens)

    def make_verifier(self, config: VerifierConfig | None = None) -> Verifier:
        return SyntheticVerifier(self.options.max_value)

    def parse_statement(self, text: str, name: str = "user_theorem") -> Problem:
        theorem = parse_statement(text)
        if theorem.goal > self.options.max_value:
            raise ValueError(f"goal {theorem.goal} is above max_value={self.options.max_value}: no proof can state it")
        problem = to_problem(theorem, "user")
        return Problem(name, problem.statement, problem.header, problem.informal, problem.split, problem.extra)

    def ensure_base_model(self, cache_dir=None, progress: bool = True):
        """The supervised base model for these options (trained once, then cached); its path."""
        from prover.tasks.synthetic.base_model import ensure_base_model

        return ensure_base_model(self.options, cache_dir=cache_dir, progress=progress)
