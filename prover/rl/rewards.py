"""The verifier as a TRL reward function: 1 for a proved theorem, 0 otherwise, None when the checker failed.

TRL calls a reward function with the prompts, the completions and every dataset column; our dataset
carries each problem's ``name``, ``statement`` and ``header`` (see ``prover.rl.dataset``), so the
trusted statement always comes from the data, never from the model's text. The whole batch goes to
the verifier in one call (it runs the checks in parallel), identical proofs are checked once, and
verdicts are remembered across steps.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from prover.data.problem import Problem
from prover.tasks.base import Task
from prover.verifier.base import Verifier
from prover.verifier.verdict import ProofRequest, Status, Verdict

logger = logging.getLogger(__name__)

DATASET_COLUMNS = ("name", "statement", "header")


def completion_text(completion: Any) -> str:
    """The text of a completion, plain or conversational (a list of messages, the last one the model's)."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        return str(completion[-1].get("content", ""))
    raise TypeError(f"cannot read a completion of type {type(completion).__name__}")


class ProofReward:
    """Reward function (``rewards/proof`` in the logs) that checks each completion's proof.

    The completion's proof is cut out by ``task.extract_proof``; a completion without one (an
    unclosed code fence, say) is wrong, reward 0, and costs no check. A verifier ERROR (its
    infrastructure failed, not the proof) gives None, which TRL leaves out of the group's baseline
    and gives no advantage.
    """

    __name__ = "proof"

    def __init__(self, task: Task, verifier: Verifier, cache_size: int = 200_000):
        self.task = task
        self.verifier = verifier
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Verdict] = OrderedDict()
        self._proved: list[dict[str, str]] = []

    def __call__(
        self,
        prompts: Sequence[Any],
        completions: Sequence[Any],
        name: Sequence[str],
        statement: Sequence[str],
        header: Sequence[str],
        log_metric: Callable[[str, float], None] | None = None,
        **_: Any,
    ) -> list[float | None]:
        problems = [Problem(name=n, statement=s, header=h) for n, s, h in zip(name, statement, header, strict=True)]
        texts = [completion_text(c) for c in completions]
        start = time.perf_counter()
        verdicts, stats = self.verdicts(problems, texts)
        if log_metric is not None:
            log_metric("time/verify", time.perf_counter() - start)
            for key, value in stats.items():
                log_metric(f"verifier/{key}", value)
        return [v.reward() if v is not None else 0.0 for v in verdicts]

    def score(self, problems: Sequence[Problem], completions: Sequence[str]) -> list[float | None]:
        """Rewards for completions of the given problems (the rank-bias probe uses this)."""
        return [v.reward() if v is not None else 0.0 for v in self.verdicts(problems, completions, record=False)[0]]

    def verdicts(
        self, problems: Sequence[Problem], completions: Sequence[str], record: bool = True
    ) -> tuple[list[Verdict | None], dict[str, float]]:
        """One verdict per completion (None: no proof could be extracted) and batch statistics."""
        proofs = [self.task.extract_proof(text, p) for text, p in zip(completions, problems, strict=True)]
        requests = [
            self.task.proof_request(p, proof) if proof is not None else None
            for p, proof in zip(problems, proofs, strict=True)
        ]
        todo: dict[str, ProofRequest] = {}
        for req in requests:
            if req is not None and req.key() not in self._cache:
                todo.setdefault(req.key(), req)
        fresh = dict(zip(todo, self.verifier.check_batch(list(todo.values())), strict=True)) if todo else {}
        for key, verdict in fresh.items():
            if verdict.status is not Status.ERROR:  # an infrastructure failure may not repeat: check again later
                self._cache[key] = verdict
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        verdicts: list[Verdict | None] = []
        for problem, proof, req in zip(problems, proofs, requests, strict=True):
            if req is None:
                verdicts.append(None)
                continue
            key = req.key()
            if key in self._cache:
                self._cache.move_to_end(key)  # least recently used goes first
            verdict = fresh[key] if key in fresh else self._cache[key]
            verdicts.append(verdict)
            if record and verdict.proved:
                self._proved.append({"name": problem.name, "statement": problem.statement, "proof": proof})
        errors = sum(v is not None and v.status is Status.ERROR for v in verdicts)
        if errors:
            logger.warning(
                "verifier failed on %d of %d proofs (reward None): %s",
                errors,
                len(verdicts),
                next(v.reason for v in verdicts if v is not None and v.status is Status.ERROR),
            )
        stats = {
            "no_proof_frac": sum(r is None for r in requests) / max(1, len(requests)),
            "checked": float(len(todo)),
            "cache_hit_frac": 1.0 - len(todo) / max(1, sum(r is not None for r in requests)),
            "error_frac": errors / max(1, len(verdicts)),
            "check_seconds": sum(v.time for v in fresh.values()),
        }
        return verdicts, stats

    def pop_proved(self) -> list[dict[str, str]]:
        """The proved (name, statement, proof) records since the last call; the trainer logs them."""
        proved, self._proved = self._proved, []
        return proved
