"""Sample -> verify -> append, resumably: the evaluation loop and its Python API.

Each problem is sampled in one ``generate`` call with a seed derived from the run seed and the
problem name, so what a problem draws does not depend on which other problems were sampled
before it, on the chunk size, or on whether the run was interrupted. Problems are grouped in chunks;
a background thread verifies one chunk and appends its records while the next chunk is sampled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prover.data.problem import Problem
from prover.eval.passk import default_ks
from prover.eval.progress import EvalProgress
from prover.eval.records import RESULTS_FILE, RecordWriter, read_records
from prover.eval.summary import Summary, summarize
from prover.runinfo import write_run_info
from prover.sampling.base import Completion, Sampler, SamplingParams
from prover.tasks.base import Task
from prover.verifier.base import Verifier
from prover.verifier.verdict import ProofRequest, Status, Verdict

logger = logging.getLogger(__name__)

SETTINGS_FILE = "eval_settings.json"


class EvalError(RuntimeError):
    """The evaluation cannot go on: a run directory holding another run, a sampler that broke its contract."""


def problem_seed(run_seed: int, name: str) -> int:
    """A 31-bit sampling seed for one problem (fits every backend's seed type)."""
    digest = hashlib.sha256(f"{run_seed}\x00{name}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


@dataclass
class _Item:
    """One sample on its way to the results file."""

    problem: Problem
    index: int
    seed: int
    completion: str
    proof: str | None
    tokens: int
    logprob_sum: float | None
    logprob_mean: float | None
    finish_reason: str | None
    sampling_seconds: float

    @classmethod
    def from_completion(
        cls, task: Task, problem: Problem, index: int, seed: int, completion: Completion, seconds: float
    ) -> _Item:
        return cls(
            problem,
            index,
            seed,
            completion.text,
            task.extract_proof(completion.text, problem),
            len(completion.token_ids),
            completion.logprob_sum,
            completion.logprob_mean,
            completion.finish_reason,
            seconds,
        )

    @classmethod
    def from_record(cls, problem: Problem, record: Mapping[str, Any]) -> _Item:
        """A recorded sample whose check failed: checked again, not sampled again."""
        return cls(
            problem,
            record["sample"],
            record["seed"],
            record["completion"],
            record["proof"],
            record["tokens"],
            record["logprob_sum"],
            record["logprob_mean"],
            record["finish_reason"],
            record.get("sampling_seconds", 0.0),
        )

    def record(self, verdict: Verdict) -> dict[str, Any]:
        return {
            "problem": self.problem.name,
            "sample": self.index,
            "seed": self.seed,
            "status": verdict.status.value,
            "proof": self.proof,
            "completion": self.completion,
            "tokens": self.tokens,
            "logprob_sum": self.logprob_sum,
            "logprob_mean": self.logprob_mean,
            "finish_reason": self.finish_reason,
            "sampling_seconds": self.sampling_seconds,
            "verdict": verdict.to_json(),
        }


NO_PROOF = Verdict(
    Status.REJECTED, reason="no proof in the completion (malformed, or the closing marker is missing)", check="extract"
)


def _check_settings(run_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse to resume into a directory whose samples were drawn under other settings."""
    path = run_dir / SETTINGS_FILE
    if not path.exists():
        path.write_text(json.dumps(settings, indent=2))
        return
    before = json.loads(path.read_text())
    changed = {
        k: (before.get(k), settings.get(k))
        for k in sorted(set(before) | set(settings))
        if before.get(k) != settings.get(k)
    }
    if changed:
        lines = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, (old, new) in changed.items())
        raise EvalError(
            f"{run_dir} holds a run with other settings ({lines}); "
            "resume with the same settings or choose another run directory"
        )


def evaluate(
    task: Task,
    sampler: Sampler,
    verifier: Verifier,
    problems: Sequence[Problem],
    *,
    samples: int,
    run_dir: str | Path,
    ks: Sequence[int] | None = None,
    sampling_params: SamplingParams | None = None,
    seed: int = 0,
    chunk_size: int = 4,
    error_retries: int = 2,
    bootstrap: int = 1000,
    confidence: float = 0.95,
    identity: Mapping[str, Any] | None = None,
    config: Any = None,
    lean_project: str | None = None,
    progress: bool = True,
) -> Summary:
    """Sample ``samples`` proofs per problem, verify them, and return (and save) the summary.

    Results stream to ``run_dir/samples.jsonl``; calling again with the same ``run_dir`` resumes:
    problems with all their samples recorded are skipped, missing samples are drawn again with the
    same seed (identical draws for a deterministic sampler), samples whose check failed are
    re-checked. ``sampling_params`` gives temperature, top_p, max_tokens and stop (``n`` and ``seed``
    are set here). ``identity`` names what the sampler and verifier are (model, task settings) so a
    resume under different ones is refused; ``config`` is what ``run_info`` records (default: these
    arguments). Does not close ``sampler`` or ``verifier``.
    """
    ks = sorted(set(ks)) if ks else default_ks(samples)
    if not ks or ks[0] < 1 or ks[-1] > samples:
        raise ValueError(f"every k must lie in 1..samples={samples}, got {ks}")
    names = [p.name for p in problems]
    if len(set(names)) != len(names):
        raise ValueError("problem names must be unique: they key the results file")
    params = dataclasses.replace(sampling_params or SamplingParams(), n=samples, seed=None)
    settings = {
        "samples": samples,
        "seed": seed,
        "task": getattr(task, "name", type(task).__name__),
        "sampling": {k: v for k, v in dataclasses.asdict(params).items() if k not in ("n", "seed")},
        **dict(identity or {}),
    }
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    _check_settings(run_dir, json.loads(json.dumps(settings)))
    write_run_info(run_dir, config if config is not None else settings, seeds={"seed": seed}, lean_project=lean_project)

    records, _ = read_records(run_dir / RESULTS_FILE)
    work = _plan(problems, records, samples)
    done = len(problems) - len(work)
    if records:
        logger.info("resuming %s: %d of %d problems complete, %d to go", run_dir, done, len(problems), len(work))
    started = time.monotonic()
    with ExitStack() as stack:
        writer = stack.enter_context(RecordWriter(run_dir / RESULTS_FILE))
        bar = stack.enter_context(EvalProgress(len(problems), samples, enabled=progress))
        bar.seed_with(records, problems, samples)
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify"))
        pending: Future | None = None
        for start in range(0, len(work), chunk_size):
            chunk = [
                _sample(task, sampler, params, problem, todo, reverify, seed)
                for problem, todo, reverify in work[start : start + chunk_size]
            ]
            if pending is not None:
                pending.result()  # at most one chunk in verification: bounds memory, surfaces failures
            pending = pool.submit(_verify_and_write, task, verifier, chunk, writer, bar, error_retries)
        if pending is not None:
            pending.result()
    records, skipped = read_records(run_dir / RESULTS_FILE)
    summary = summarize(records, names, samples, ks, bootstrap, confidence, seed, skipped)
    summary.save(run_dir)
    if summary.errors:
        logger.warning(
            "%d samples still have checker failures (ERROR) and are left out of pass@k; "
            "rerun the same command to check them again",
            summary.errors,
        )
    logger.info("evaluated %d problems in %.1f s; summary in %s", len(problems), time.monotonic() - started, run_dir)
    return summary


def _plan(
    problems: Sequence[Problem], records: Mapping[tuple[str, int], Mapping[str, Any]], samples: int
) -> list[tuple[Problem, list[int], list[Mapping[str, Any]]]]:
    """For each unfinished problem: sample indices never recorded, and records to check again."""
    work = []
    for problem in problems:
        found = [records.get((problem.name, i)) for i in range(samples)]
        missing = [i for i, r in enumerate(found) if r is None]
        failed = [r for r in found if r is not None and r["status"] == Status.ERROR.value]
        if missing or failed:
            work.append((problem, missing, failed))
    return work


def _sample(
    task: Task,
    sampler: Sampler,
    params: SamplingParams,
    problem: Problem,
    missing: list[int],
    failed: list[Mapping[str, Any]],
    run_seed: int,
) -> list[_Item]:
    items = [_Item.from_record(problem, r) for r in failed]
    if not missing:
        return items
    seed = problem_seed(run_seed, problem.name)
    started = time.monotonic()
    (completions,) = sampler.generate([task.build_prompt(problem)], dataclasses.replace(params, seed=seed))
    seconds = (time.monotonic() - started) / params.n
    if len(completions) != params.n:
        raise EvalError(f"the sampler returned {len(completions)} completions for {problem.name}, asked for {params.n}")
    items += [_Item.from_completion(task, problem, i, seed, completions[i], seconds) for i in missing]
    return items


def _verify_and_write(
    task: Task,
    verifier: Verifier,
    chunk: list[list[_Item]],
    writer: RecordWriter,
    bar: EvalProgress,
    error_retries: int,
) -> None:
    """Check each distinct proof once, retry checker failures, append the chunk's records."""
    items = [item for problem_items in chunk for item in problem_items]
    requests: dict[str, ProofRequest] = {}
    for item in items:
        if item.proof is not None:
            request = task.proof_request(item.problem, item.proof)
            requests.setdefault(request.key(), request)
    verdicts = _check_with_retries(verifier, list(requests.values()), error_retries)
    first_use: set[str] = set()
    for problem_items in chunk:
        lines = []
        for item in sorted(problem_items, key=lambda it: it.index):
            if item.proof is None:
                verdict = NO_PROOF
            else:
                key = task.proof_request(item.problem, item.proof).key()
                verdict = verdicts[key]
                if key in first_use:  # the same proof again: its check time is counted once
                    verdict = dataclasses.replace(verdict, time=0.0, cached=True)
                first_use.add(key)
            lines.append(item.record(verdict))
        writer.write(lines)
        bar.add(problem_items[0].problem.name, lines)
    writer.sync()


def _backoff(attempt: int) -> None:
    """Give a restarting worker pool a moment before the next try (2, 4, 8 ... s, at most 30)."""
    time.sleep(min(30.0, 2.0**attempt))


def _check_with_retries(verifier: Verifier, requests: list[ProofRequest], retries: int) -> dict[str, Verdict]:
    verdicts = dict(zip((r.key() for r in requests), verifier.check_batch(requests)))
    for attempt in range(1, retries + 1):
        failed = [r for r in requests if verdicts[r.key()].status is Status.ERROR]
        if not failed:
            break
        logger.warning(
            "checker failed on %d proofs (%s); retry %d of %d",
            len(failed),
            verdicts[failed[0].key()].reason or "no reason given",
            attempt,
            retries,
        )
        _backoff(attempt)
        verdicts.update(zip((r.key() for r in failed), verifier.check_batch(failed)))
    return verdicts
