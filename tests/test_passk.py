"""The pass@k estimator and the bootstrap intervals."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import numpy as np
import pytest

from prover.eval.passk import bootstrap_means, default_ks, pass_at_k, pass_at_k_matrix


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """1 - C(n-c, k) / C(n, k) in exact arithmetic."""
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def brute_force_pass_at_k(n: int, c: int, k: int) -> Fraction:
    """The definition: the share of k-subsets of the n samples holding a correct one."""
    samples = [True] * c + [False] * (n - c)
    subsets = list(itertools.combinations(samples, k))
    return Fraction(sum(any(s) for s in subsets), len(subsets))


@pytest.mark.parametrize("n", range(1, 9))
def test_matches_the_definition_on_small_cases(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(float(brute_force_pass_at_k(n, c, k)), abs=1e-12)


@pytest.mark.parametrize(
    "n,c,k", [(1, 0, 1), (1, 1, 1), (10, 3, 1), (10, 3, 5), (100, 1, 10), (256, 7, 32), (1000, 999, 1), (1000, 1, 999)]
)
def test_matches_exact_binomials(n, c, k):
    assert pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), rel=1e-12, abs=1e-15)


def test_known_values():
    assert pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(1, 1, 1) == 1.0
    for n in (1, 5, 64, 3200):
        assert pass_at_k(n, 0, 1) == 0.0 and pass_at_k(n, 0, n) == 0.0  # c = 0: never
        assert pass_at_k(n, n, 1) == 1.0 and pass_at_k(n, n, n) == 1.0  # c = n: always
    for n, c in [(10, 3), (256, 17), (3200, 1)]:
        assert pass_at_k(n, c, 1) == pytest.approx(c / n, rel=1e-12)  # k = 1: the success rate
        assert pass_at_k(n, c, n) == (1.0 if c else 0.0)  # k = n: solved at all


def test_monotone_in_k_and_c():
    n = 200
    for c in (1, 5, 50, 199):
        values = [pass_at_k(n, c, k) for k in range(1, n + 1)]
        assert all(b >= a for a, b in zip(values, values[1:]))
    for k in (1, 10, 100):
        values = [pass_at_k(n, c, k) for c in range(n + 1)]
        assert all(b >= a for a, b in zip(values, values[1:]))


def test_stable_for_large_n():
    n = 3200  # C(3200, 1600) has ~960 digits: no float holds it
    for c, k in [(1, 1), (1, 1600), (3, 3000), (100, 64), (1600, 1600), (3199, 1)]:
        value = pass_at_k(n, c, k)
        assert math.isfinite(value) and 0.0 <= value <= 1.0
        assert value == pytest.approx(float(exact_pass_at_k(n, c, k)), rel=1e-9, abs=1e-12)
    values = [pass_at_k(n, 2, k) for k in range(1, n + 1, 37)]
    assert all(b >= a for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("n,c,k", [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert default_ks(100) == [1, 2, 4, 8, 16, 32, 64, 100]


def test_matrix_leaves_out_problems_without_k_samples():
    m = pass_at_k_matrix([(4, 1), (2, 2)], [1, 4])
    assert m[0].tolist() == pytest.approx([0.25, 1.0])
    assert m[1, 0] == 1.0 and np.isnan(m[1, 1])


def test_bootstrap_interval_contains_the_mean_and_is_seeded():
    rng = np.random.default_rng(1)
    values = rng.random((200, 3))
    a = bootstrap_means(values, resamples=500, seed=7)
    b = bootstrap_means(values, resamples=500, seed=7)
    assert a == b
    for column, iv in zip(values.T, a):
        assert iv.mean == pytest.approx(column.mean())
        assert iv.low < iv.mean < iv.high
        # the standard error of a mean of 200 uniforms is ~0.02: a 95% interval is ~0.08 wide
        assert 0.04 < iv.high - iv.low < 0.12
        assert iv.problems == 200


def test_bootstrap_skips_missing_cells_and_handles_degenerate_input():
    values = np.array([[1.0, np.nan], [0.0, 0.5], [1.0, 0.5]])
    (with_nan,) = bootstrap_means(values[:, 1:], resamples=200)
    assert with_nan.mean == 0.5 and with_nan.low == 0.5 and with_nan.high == 0.5 and with_nan.problems == 2
    (constant,) = bootstrap_means(np.ones((5, 1)), resamples=100)
    assert (constant.mean, constant.low, constant.high) == (1.0, 1.0, 1.0)
    (none,) = bootstrap_means(values[:, :1], resamples=0)
    assert none.low == none.high == none.mean == pytest.approx(2 / 3)


def test_paired_difference_sees_what_overlapping_bands_hide():
    from prover.eval.summary import ProblemResult, Summary, paired_difference

    def run(correct):  # 40 problems of spread-out difficulty, 10 samples each
        per = {f"p{i}": ProblemResult(10, c, c, 0) for i, c in enumerate(correct)}
        counts = [(10, c) for c in correct]
        iv = dict(zip([1, 10], bootstrap_means(pass_at_k_matrix(counts, [1, 10]), 500)))
        return Summary(10, [1, 10], iv, len(per), 0, 0.0, None, None, {}, 0, [], 0.0, 0.0, per)

    base_correct = [i % 10 for i in range(40)]
    base, better = run(base_correct), run([min(10, c + 1) for c in base_correct])
    diff = paired_difference(base, better, resamples=500)
    assert diff[1].mean == pytest.approx(better.pass_at_k[1].mean - base.pass_at_k[1].mean)
    assert better.pass_at_k[1].low < base.pass_at_k[1].high  # the runs' own bands overlap ...
    assert diff[1].low > 0 and diff[1].problems == 40  # ... the paired interval excludes 0
    assert paired_difference(base, base, resamples=100)[1].mean == 0.0
