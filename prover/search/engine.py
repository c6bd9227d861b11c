"""The loop every strategy shares: sample, cut proofs out, verify each distinct proof once, stop on
a proof, the budget, the clock or Ctrl-C. Strategies only decide what to sample next."""

from __future__ import annotations

import abc
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from prover.data.problem import Problem
from prover.sampling.base import Completion, Sampler, SamplingParams
from prover.search.progress import SearchProgress
from prover.tasks.base import Task
from prover.verifier.base import Verifier
from prover.verifier.split import layout
from prover.verifier.verdict import Status, Verdict

if TYPE_CHECKING:
    from prover.search.backends import ProofStateBackend
    from prover.search.config import SearchConfig
    from prover.search.record import AttemptLog

logger = logging.getLogger(__name__)

Outcome = Literal["proved", "exhausted", "timeout", "cancelled"]


class SearchError(RuntimeError):
    """The search could not run (a backend or the model failed); not a verdict on the theorem."""


class StatementError(ValueError):
    """The statement itself is unusable (not a theorem, no ``:= by``, rejected by Lean with ``sorry``)."""


@dataclass
class Found:
    proof: str
    verdict: Verdict


@dataclass
class SearchResult:
    outcome: Outcome
    problem: Problem
    progress: SearchProgress
    proof: str | None = None
    verdict: Verdict | None = None
    note: str = ""  # why it stopped, when that is not obvious from the outcome

    @property
    def proved(self) -> bool:
        return self.outcome == "proved"

    @property
    def full_text(self) -> str:
        """Statement and proof as the verifier joined them: what a user pastes below the header."""
        return layout("", self.problem.statement, self.proof or "").command

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "name": self.problem.name,
            "statement": self.problem.statement,
            "proof": self.proof,
            "verdict": self.verdict.to_json() if self.verdict else None,
            "note": self.note,
            **self.progress.to_json(),
        }


@dataclass
class SearchContext:
    """What a strategy works with; ``sample`` and ``verify`` keep the progress counters."""

    problem: Problem
    task: Task
    sampler: Sampler
    verifier: Verifier
    config: SearchConfig
    progress: SearchProgress
    cancel: threading.Event = field(default_factory=threading.Event)
    backend: ProofStateBackend | None = None
    log: AttemptLog | None = None
    note: str = ""
    tried: dict[str, Verdict] = field(default_factory=dict)  # proof (right-stripped) -> verdict

    def __post_init__(self) -> None:
        limit = self.config.time_limit
        self.deadline = time.monotonic() + limit if limit > 0 else None
        self._errored: set[str] = set()  # proofs whose check failed (ERROR): counted once as distinct

    def stop_reason(self) -> Outcome | None:
        if self.cancel.is_set():
            return "cancelled"
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return "timeout"
        return None

    def budget_left(self) -> int:
        return self.config.budget - self.progress.used

    def prompt(self) -> str:
        return self.task.build_prompt(self.problem)

    def sample(
        self, prompts: list[str], n: int, max_tokens: int, stop: list[str] | None = None
    ) -> list[list[Completion]]:
        """``n`` completions per prompt; round r uses seed + r so a search can be replayed.

        ``stop`` defaults to the task's stop strings (the Lean task's closing fence), when it has any.
        """
        if stop is None:
            stop = list(getattr(self.task, "stop", []))
        params = SamplingParams(
            n=n,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            max_tokens=max_tokens,
            seed=self.config.seed + self.progress.rounds,
            stop=stop,
        )
        self.progress.update(phase="sampling")
        out = self.sampler.generate(prompts, params)
        self.progress.add(samples=sum(len(c) for c in out), rounds=1)
        return out

    def extract(self, texts: list[str]) -> list[str | None]:
        """The proof in each completion text; None (and counted as malformed) when there is none."""
        proofs = [self.task.extract_proof(t, self.problem) for t in texts]
        self.progress.add(malformed=sum(p is None for p in proofs))
        return proofs

    def verify(self, proofs: list[str]) -> list[Verdict]:
        """A verdict per proof, in order; a proof already judged is not sent again.

        An ERROR verdict (the checker failed, not the proof) is not remembered, so the proof can
        be checked again; a batch in which every check failed raises ``SearchError``: the search
        stops rather than spend its budget on a broken verifier.
        """
        keys = [p.rstrip() for p in proofs]
        new: dict[str, str] = {}  # key -> the first proof text with that key
        for key, proof in zip(keys, proofs):
            if key not in self.tried:
                new.setdefault(key, proof)
        fresh: dict[str, Verdict] = {}
        if new:
            self.progress.update(phase="verifying")
            verdicts = self.verifier.check_batch([self.task.proof_request(self.problem, p) for p in new.values()])
            self.progress.add(distinct=len(new.keys() - self._errored))
            for (key, proof), verdict in zip(new.items(), verdicts):
                fresh[key] = verdict
                self.progress.record_verdict(verdict)
                if verdict.status is Status.ERROR:
                    self._errored.add(key)
                    continue
                self.tried[key] = verdict
                if self.log is not None:
                    self.log.append(proof, verdict, self.progress)
            if all(v.status is Status.ERROR for v in verdicts):
                raise SearchError(f"the verifier failed on all {len(verdicts)} proofs of a batch: {verdicts[0].reason}")
        return [fresh[k] if k in fresh else self.tried[k] for k in keys]

    def first_proved(self, proofs: list[str]) -> Found | None:
        for proof, verdict in zip(proofs, self.verify(proofs)):
            if verdict.proved:
                return Found(proof, verdict)
        return None


class Strategy(abc.ABC):
    """Decides what to sample next; returns a proof the verifier accepted, or None."""

    name: str
    budget_unit: str = "samples"

    @abc.abstractmethod
    def run(self, ctx: SearchContext) -> Found | None:
        """Search until a proof is found, the budget is spent or ``ctx.stop_reason()`` says stop."""


def make_strategy(name: str) -> Strategy:
    from prover.search.best_first import BestFirstStrategy
    from prover.search.resume import TruncateResumeStrategy
    from prover.search.whole_proof import WholeProofStrategy

    strategies = {s.name: s for s in (WholeProofStrategy, TruncateResumeStrategy, BestFirstStrategy)}
    if name not in strategies:
        raise ValueError(f"unknown strategy {name!r}; choose one of {sorted(strategies)}")
    return strategies[name]()
