"""What a run's records add up to: pass@k with intervals and the numbers that explain it.

The rule for checker failures: a sample whose verdict is ERROR is neither right nor wrong. It is
left out of its problem's ``n``; a problem with fewer than ``k`` usable samples is left out of the
pass@k mean at that ``k`` (each interval says how many problems it covers) and is listed under
``incomplete``. The runner re-checks ERROR samples first, so this only bites when the checker keeps
failing, and the summary then says so in ``errors``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from prover.eval.passk import Interval, bootstrap_means, pass_at_k_matrix
from prover.verifier.verdict import Status

SUMMARY_FILE = "summary.json"


@dataclass
class ProblemResult:
    samples: int  # usable samples: recorded, verdict not ERROR
    correct: int
    distinct_correct: int  # correct proofs that differ after collapsing whitespace
    errors: int


@dataclass
class Summary:
    samples: int  # samples per problem asked for
    ks: list[int]
    pass_at_k: dict[int, Interval]
    problems: int
    solved: int  # problems with at least one correct sample
    distinct_correct_mean: float  # distinct correct proofs per problem, over all problems
    mean_tokens: float | None  # completion length over usable samples
    mean_correct_tokens: float | None  # completion length of correct samples
    statuses: dict[str, int]  # records by verdict status, plus "no_proof" for malformed completions
    errors: int  # samples whose verdict is still ERROR (left out, see the module docstring)
    incomplete: list[str]  # problems with fewer than ``samples`` usable samples
    sampling_seconds: float  # summed wall time of the generate calls, over all sessions
    verify_seconds: float  # summed checker time of the verdicts, over all sessions
    per_problem: dict[str, ProblemResult] = field(default_factory=dict)
    confidence: float = 0.95
    bootstrap: int = 1000
    skipped_lines: int = 0  # unreadable lines in the results file (a torn last line after a crash)

    @property
    def solved_fraction(self) -> float:
        return self.solved / self.problems if self.problems else 0.0

    def results(self) -> dict[str, Any]:
        """Everything but timing: what an interrupted and an uninterrupted run must agree on."""
        out = self.to_json()
        for key in ("sampling_seconds", "verify_seconds", "skipped_lines"):
            out.pop(key)
        return out

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["pass_at_k"] = {str(k): v.to_json() for k, v in self.pass_at_k.items()}
        out["solved_fraction"] = self.solved_fraction
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Summary:
        data = dict(data)
        data.pop("solved_fraction", None)
        data["pass_at_k"] = {int(k): Interval(**v) for k, v in data["pass_at_k"].items()}
        data["per_problem"] = {name: ProblemResult(**r) for name, r in data.get("per_problem", {}).items()}
        return cls(**data)

    def save(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / SUMMARY_FILE
        tmp = path.with_suffix(".json.tmp")  # a crash mid-write never leaves half a summary
        tmp.write_text(json.dumps(self.to_json(), indent=2))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, run_dir: str | Path) -> Summary:
        path = Path(run_dir) / SUMMARY_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: is {run_dir} an evaluation run directory that finished?")
        return cls.from_json(json.loads(path.read_text()))


def normalize_proof(proof: str) -> str:
    """Proofs that differ only in whitespace runs count as one distinct proof."""
    return " ".join(proof.split())


def summarize(
    records: Mapping[tuple[str, int], Mapping[str, Any]],
    problem_names: Sequence[str],
    samples: int,
    ks: Sequence[int],
    bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    skipped_lines: int = 0,
) -> Summary:
    """Summary of the records of ``problem_names`` (records of other problems are ignored)."""
    per_problem: dict[str, ProblemResult] = {}
    statuses: Counter[str] = Counter()
    tokens: list[int] = []
    correct_tokens: list[int] = []
    sampling_seconds = verify_seconds = 0.0
    for name in problem_names:
        usable = correct = errors = 0
        distinct: set[str] = set()
        for i in range(samples):
            record = records.get((name, i))
            if record is None:
                continue
            status = record["status"]
            statuses[status] += 1
            if record.get("proof") is None:
                statuses["no_proof"] += 1
            sampling_seconds += record.get("sampling_seconds", 0.0)
            verify_seconds += record.get("verdict", {}).get("time", 0.0)
            if status == Status.ERROR.value:
                errors += 1
                continue
            usable += 1
            tokens.append(record.get("tokens", 0))
            if status == Status.PROVED.value:
                correct += 1
                correct_tokens.append(record.get("tokens", 0))
                distinct.add(normalize_proof(record["proof"]))
        per_problem[name] = ProblemResult(usable, correct, len(distinct), errors)
    counts = [(r.samples, r.correct) for r in per_problem.values()]
    intervals = bootstrap_means(pass_at_k_matrix(counts, ks), bootstrap, confidence, seed)
    return Summary(
        samples=samples,
        ks=list(ks),
        pass_at_k=dict(zip(ks, intervals)),
        problems=len(per_problem),
        solved=sum(r.correct > 0 for r in per_problem.values()),
        distinct_correct_mean=float(np.mean([r.distinct_correct for r in per_problem.values()]))
        if per_problem
        else 0.0,
        mean_tokens=float(np.mean(tokens)) if tokens else None,
        mean_correct_tokens=float(np.mean(correct_tokens)) if correct_tokens else None,
        statuses=dict(sorted(statuses.items())),
        errors=sum(r.errors for r in per_problem.values()),
        incomplete=[name for name, r in per_problem.items() if r.samples < samples],
        sampling_seconds=sampling_seconds,
        verify_seconds=verify_seconds,
        per_problem=per_problem,
        confidence=confidence,
        bootstrap=bootstrap,
        skipped_lines=skipped_lines,
    )


def paired_difference(
    base: Summary,
    other: Summary,
    ks: Sequence[int] | None = None,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[int, Interval]:
    """pass@k of ``other`` minus ``base`` over the problems both ran, with a paired bootstrap interval.

    Resampling the per-problem differences cancels the problem-difficulty spread that dominates
    each run's own interval: two runs whose bands overlap can still differ clearly.
    """
    names = [name for name in base.per_problem if name in other.per_problem]
    ks = [k for k in (ks or base.ks) if k in base.ks and k in other.ks]
    a = pass_at_k_matrix([(base.per_problem[n].samples, base.per_problem[n].correct) for n in names], ks)
    b = pass_at_k_matrix([(other.per_problem[n].samples, other.per_problem[n].correct) for n in names], ks)
    return dict(zip(ks, bootstrap_means(b - a, resamples, confidence, seed)))


def restrict(summary: Summary, names: Sequence[str], seed: int = 0) -> Summary:
    """``summary`` over the problems ``names`` only (for comparing runs on the problems all of them ran).

    pass@k, solved, distinct proofs and failures are recomputed from ``per_problem``; the figures
    that need the records (verdict counts, lengths, times) are blanked rather than left wrong.
    """
    per_problem = {name: summary.per_problem[name] for name in names}
    counts = [(r.samples, r.correct) for r in per_problem.values()]
    intervals = bootstrap_means(pass_at_k_matrix(counts, summary.ks), summary.bootstrap, summary.confidence, seed)
    return replace(
        summary,
        pass_at_k=dict(zip(summary.ks, intervals)),
        problems=len(per_problem),
        solved=sum(r.correct > 0 for r in per_problem.values()),
        distinct_correct_mean=float(np.mean([r.distinct_correct for r in per_problem.values()]))
        if per_problem
        else 0.0,
        mean_tokens=None,
        mean_correct_tokens=None,
        statuses={},
        errors=sum(r.errors for r in per_problem.values()),
        incomplete=[name for name, r in per_problem.items() if r.samples < summary.samples],
        sampling_seconds=0.0,
        verify_seconds=0.0,
        per_problem=per_problem,
        skipped_lines=0,
    )
