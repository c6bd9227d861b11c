"""A task is what the trainer, the evaluator and the search need to know about a kind of theorem:
its problems, its prompt format, how a proof is cut out of a completion, and its verifier.
They take a ``Task`` and never ask which one it is."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from prover.data.problem import Problem
from prover.verifier.base import Verifier
from prover.verifier.config import VerifierConfig
from prover.verifier.verdict import ProofRequest


@dataclass
class TaskConfig:
    name: str = field(default="synthetic", metadata={"help": "synthetic | lean"})
    dataset: str | None = field(
        default=None,
        metadata={
            "help": "lean: a named set (minif2f-test, minif2f-valid, lean-workbook), a file, a directory or a hub id; synthetic: train | test"
        },
    )
    prompt_template: str = field(
        default="deepseek-v1.5", metadata={"help": "prompt format by name (lean); see prover.data.prompts"}
    )
    require_closing_fence: bool = field(
        default=True, metadata={"help": "a completion that never closes its code fence counts as wrong"}
    )
    reject_text_after_fence: bool = field(
        default=False,
        metadata={
            "help": "lean: a completion with any text after its last code fence counts as wrong, and the proof ends at the first fence that starts a line (the paper's release: penalize_extra_text)"
        },
    )
    exclude: list[str] = field(
        default_factory=list, metadata={"help": "problem names to leave out (e.g. known-defective statements)"}
    )
    limit: int | None = field(default=None, metadata={"help": "keep only the first N problems (after exclusion)"})
    options: dict[str, Any] = field(
        default_factory=dict, metadata={"help": "task-specific settings, checked by the task"}
    )


class Task(abc.ABC):
    name: str

    @abc.abstractmethod
    def load_problems(self, dataset: str | None = None) -> list[Problem]:
        """The problems of ``dataset`` (the config's when None), exclusions and limit applied."""

    @abc.abstractmethod
    def build_prompt(self, problem: Problem) -> str:
        """The text the model continues with a proof."""

    @abc.abstractmethod
    def extract_proof(self, completion: str, problem: Problem | None = None) -> str | None:
        """The proof inside a completion, or None when it is malformed (e.g. an unclosed fence).

        ``problem``: the theorem the completion answers. Formats in which the model restates the
        theorem (Lean chat templates) need it to check that the statement was not changed.
        """

    def proof_request(self, problem: Problem, proof: str) -> ProofRequest:
        """Trusted header and statement from the problem, proof from the model."""
        return ProofRequest(statement=problem.statement, proof=proof, header=problem.header, name=problem.name)

    @abc.abstractmethod
    def make_verifier(self, config: VerifierConfig | None = None) -> Verifier:
        """A ready verifier for this task's proofs (close it when done)."""

    def parse_statement(self, text: str, name: str = "user_theorem") -> Problem:
        """A problem from a statement a user typed (the search); raises ValueError when it is not one."""
        raise NotImplementedError(f"task {self.name!r} does not take statements from users")


_REGISTRY: dict[str, str] = {
    "synthetic": "prover.tasks.synthetic:SyntheticTask",
    "lean": "prover.tasks.lean:LeanTask",
}


def make_task(config: TaskConfig) -> Task:
    """Instantiate the task named in ``config`` (imported lazily: Lean needs no torch, synthetic no Lean)."""
    import importlib

    if config.name not in _REGISTRY:
        raise ValueError(f"unknown task {config.name!r}; choose one of {sorted(_REGISTRY)}")
    module, _, cls = _REGISTRY[config.name].partition(":")
    return getattr(importlib.import_module(module), cls)(config)
