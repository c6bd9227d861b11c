"""The unbiased pass@k estimator and bootstrap intervals over problems.

pass@k of one problem with ``n`` samples of which ``c`` are correct is the probability that a random
subset of ``k`` of the ``n`` samples holds at least one correct one: ``1 - C(n-c, k) / C(n, k)``
(Chen et al. 2021, "Evaluating Large Language Models Trained on Code"). The binomials overflow a
float long before n = 3200, so the ratio is taken as the running product
``prod_{i=n-c+1}^{n} (1 - k/i)``, whose terms all lie in [0, 1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem: ``n`` samples, ``c`` correct, ``1 <= k <= n``."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:  # every k-subset holds a correct sample
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1, dtype=np.float64)))


def default_ks(samples: int) -> list[int]:
    """Powers of two below ``samples``, then ``samples`` itself: the x axis of a pass@k plot."""
    ks = [1 << i for i in range(samples.bit_length()) if (1 << i) < samples]
    return ks + [samples]


def pass_at_k_matrix(counts: Sequence[tuple[int, int]], ks: Sequence[int]) -> np.ndarray:
    """``(problems, len(ks))`` pass@k values; NaN where a problem has fewer than k usable samples."""
    out = np.full((len(counts), len(ks)), np.nan)
    for i, (n, c) in enumerate(counts):
        for j, k in enumerate(ks):
            if k <= n:
                out[i, j] = pass_at_k(n, c, k)
    return out


@dataclass(frozen=True)
class Interval:
    """A mean over problems and its bootstrap percentile interval."""

    mean: float
    low: float
    high: float
    problems: int  # how many problems entered the mean

    def to_json(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "problems": self.problems}


def bootstrap_means(
    values: np.ndarray, resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> list[Interval]:
    """Column means of ``values`` (problems x metrics) with percentile intervals from resampling problems.

    Problems are the unit drawn from a population, so they are what is resampled; the sampling
    noise inside one problem is already averaged by the unbiased estimator. All columns share the
    same draws (a paired bootstrap), so the bands of pass@k for different k stay consistent. NaN
    cells (a problem that lacks k usable samples) are left out of their column. ``resamples = 0``
    gives the mean with a degenerate interval.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    problems, columns = values.shape
    present = ~np.isnan(values)
    filled = np.where(present, values, 0.0)
    counts = present.sum(axis=0)
    means = np.divide(filled.sum(axis=0), counts, out=np.full(columns, np.nan), where=counts > 0)
    if resamples <= 0 or problems == 0:
        return [Interval(float(m), float(m), float(m), int(n)) for m, n in zip(means, counts)]
    rng = np.random.default_rng(seed)
    boot = np.empty((resamples, columns))
    block = max(1, 2_000_000 // max(1, problems * columns))  # bounds memory for large problem sets
    for start in range(0, resamples, block):
        draws = rng.integers(0, problems, size=(min(block, resamples - start), problems))
        sums, hits = filled[draws].sum(axis=1), present[draws].sum(axis=1)
        boot[start : start + len(draws)] = np.divide(sums, hits, out=np.full(sums.shape, np.nan), where=hits > 0)
    alpha = (1.0 - confidence) / 2.0
    intervals = []
    for j in range(columns):
        column = boot[:, j][~np.isnan(boot[:, j])]
        if counts[j] == 0 or column.size == 0:
            intervals.append(Interval(float(means[j]), float("nan"), float("nan"), int(counts[j])))
            continue
        low, high = np.quantile(column, [alpha, 1.0 - alpha])
        intervals.append(Interval(float(means[j]), float(low), float(high), int(counts[j])))
    return intervals
