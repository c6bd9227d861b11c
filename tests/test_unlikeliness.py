"""The unlikeliness shaping on hand-made groups: factors, ties, degenerate groups, and process splits."""

from __future__ import annotations

import math

import pytest
import torch

from prover.rl.unlikeliness import (
    group_advantages,
    likelihood_ranks,
    sequence_logprob,
    shape_rewards,
    unlikeliness_factors,
    zero_signal_groups,
)

NAN = float("nan")
T = torch.tensor


def close(a, b):
    a, b = torch.as_tensor(a, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32)
    return torch.allclose(a, b, equal_nan=True, atol=1e-6)


@pytest.mark.parametrize(
    "keys, include, ids, expected",
    [
        # distinct keys: rank = position in ascending order, 0 = least likely
        ([-3.0, -1.0, -2.0, -0.5], None, None, [0, 2, 1, 3]),
        # two rows tied at the bottom share the average of ranks 0 and 1
        ([-2.0, -2.0, -1.0, -0.5], None, None, [0.5, 0.5, 2, 3]),
        # three-way tie at the top shares (1 + 2 + 3) / 3
        ([-5.0, -1.0, -1.0, -1.0], None, None, [0, 2, 2, 2]),
        # excluded rows get no rank and do not push the others up
        ([-3.0, -1.0, -2.0, -0.5], [True, False, True, False], None, [0, NAN, 1, NAN]),
        # the same completion (equal ids) with keys differing in the last bits is one tie
        ([-1.0000001, -1.0, -2.0, -0.5], None, [7, 7, 1, 2], [1.5, 1.5, 0, 3]),
    ],
)
def test_ranks(keys, include, ids, expected):
    ranks = likelihood_ranks(
        T(keys), 4, include=None if include is None else T(include), sample_ids=None if ids is None else T(ids)
    )
    assert close(ranks, expected), ranks


def test_ranks_first_spreads_ties_in_row_order():
    # G=6: two rows tied at the bottom, one alone, three tied at the top (two of them the same completion)
    keys = T([-1.0, -3.0, -1.0, -2.0, -3.0, -1.0])
    ids = T([5, 1, 6, 2, 3, 5])
    assert close(likelihood_ranks(keys, 6, sample_ids=ids, ties="first"), [3, 0, 4, 2, 1, 5])
    assert close(likelihood_ranks(keys, 6, sample_ids=ids), [4, 0.5, 4, 2, 0.5, 4])  # the reward's rule
    assert close(
        likelihood_ranks(keys, 6, include=T([True, True, False, True, True, True]), ties="first"), [3, 0, NAN, 2, 1, 4]
    )
    with pytest.raises(ValueError, match="tie rule"):
        likelihood_ranks(keys, 6, ties="dense")


def test_ranks_do_not_depend_on_row_order():
    g = torch.Generator().manual_seed(0)
    keys = torch.randint(0, 4, (16,), generator=g).float()  # many ties
    perm = torch.randperm(16, generator=g)
    assert close(likelihood_ranks(keys, 16)[perm], likelihood_ranks(keys[perm], 16))


@pytest.mark.parametrize(
    "rewards, keys, rank_set, expected",
    [
        # G=4, beta=0.25: a correct row keeps 1 - 0.25 * r / 4
        ([1.0, 0.0, 1.0, 0.0], [-3.0, -2.0, -1.0, -0.5], "all", [1.0, 1.0, 1 - 0.25 * 2 / 4, 1.0]),
        # all correct: factors fall with likelihood, the least likely keeps its full reward
        (
            [1.0, 1.0, 1.0, 1.0],
            [-0.5, -1.0, -2.0, -3.0],
            "all",
            [1 - 0.25 * 3 / 4, 1 - 0.25 * 2 / 4, 1 - 0.25 / 4, 1.0],
        ),
        # all wrong: nothing changes
        ([0.0, 0.0, 0.0, 0.0], [-0.5, -1.0, -2.0, -3.0], "all", [1.0, 1.0, 1.0, 1.0]),
        # ranking only the correct ones: the likelier of two correct proofs has rank 1 of them
        ([1.0, 0.0, 1.0, 0.0], [-3.0, -2.0, -1.0, -0.5], "correct", [1.0, 1.0, 1 - 0.25 / 4, 1.0]),
        # a verifier error (NaN) is never shaped, but is still ranked under "all"
        ([NAN, 1.0, 0.0, 1.0], [-0.1, -2.0, -3.0, -1.0], "all", [1.0, 1 - 0.25 / 4, 1.0, 1 - 0.25 * 2 / 4]),
    ],
)
def test_factors(rewards, keys, rank_set, expected):
    factors = unlikeliness_factors(T(rewards), T(keys), 4, 0.25, rank_set)
    assert close(factors, expected), factors


def test_shape_multiplies_correct_rewards_only():
    rewards = T([1.0, 0.0, NAN, 1.0])
    shaped, factors = shape_rewards(rewards, T([-1.0, -2.0, -3.0, -0.5]), 4, 0.25)
    assert close(shaped, [1 - 0.25 * 2 / 4, 0.0, NAN, 1 - 0.25 * 3 / 4])
    assert close(factors[[0, 3]], shaped[[0, 3]])


def test_one_sample_groups_keep_their_reward():
    shaped, factors = shape_rewards(T([1.0, 0.0, 1.0]), T([-1.0, -2.0, -0.1]), 1, 0.25)
    assert close(shaped, [1.0, 0.0, 1.0]) and close(factors, [1.0, 1.0, 1.0])


def test_groups_are_shaped_independently():
    rewards = T([1.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    keys = T([-1.0, -2.0, -3.0, -5.0, -4.0, -6.0])
    both, _ = shape_rewards(rewards, keys, 3, 0.5)
    first, _ = shape_rewards(rewards[:3], keys[:3], 3, 0.5)
    second, _ = shape_rewards(rewards[3:], keys[3:], 3, 0.5)
    assert close(both, torch.cat([first, second]))


def test_split_across_processes_gives_the_same_result():
    """Two processes holding halves of each group: the trainer gathers keys and rewards in process
    order before shaping, exactly as TRL gathers rewards, so the result equals one process's."""
    g = torch.Generator().manual_seed(1)
    group, groups = 8, 3
    rewards = torch.randint(0, 2, (group * groups,), generator=g).float()
    keys = -torch.rand(group * groups, generator=g)
    single, _ = shape_rewards(rewards, keys, group, 0.25)
    # process p holds rows [p * 12, (p + 1) * 12): the middle group straddles both
    local = [(rewards[:12], keys[:12]), (rewards[12:], keys[12:])]
    gathered_r = torch.cat([r for r, _ in local])
    gathered_k = torch.cat([k for _, k in local])
    split, _ = shape_rewards(gathered_r, gathered_k, group, 0.25)
    assert close(single, split)


def test_normalised_advantages_favour_the_unlikely_correct_proof():
    """After TRL's (r - mean) / std, the least likely correct proof gets the largest advantage."""
    rewards = T([1.0, 1.0, 0.0, 0.0])
    keys = T([-0.2, -3.0, -1.0, -2.0])  # row 1 is the unlikely correct proof
    shaped, _ = shape_rewards(rewards, keys, 4, 0.25)
    adv = (shaped - shaped.mean()) / (shaped.std() + 1e-4)
    assert adv[1] > adv[0] > 0 > adv[2] == adv[3]


@pytest.mark.parametrize(
    "rewards, expected",
    [
        # one of four: mean 1/4, Bessel std sqrt((9/16 + 3/16) / 3) = 1/2
        ([1.0, 0.0, 0.0, 0.0], [0.75 / 0.5, -0.25 / 0.5, -0.25 / 0.5, -0.25 / 0.5]),
        # shaped rewards: mean 0.4, std sqrt((0.36 + 0.04 + 0.16 + 0) / 3)
        ([1.0, 0.2, 0.0, 0.4], [v / math.sqrt(0.56 / 3) for v in (0.6, -0.2, -0.4, 0.0)]),
        # a verifier error (NaN) is left out of the mean and std and gets 0: mean 1/3, std sqrt(1/3)
        ([1.0, 0.0, NAN, 0.0], [v / math.sqrt(1 / 3) for v in (2 / 3, -1 / 3, 0.0, -1 / 3)]),
        ([1.0, 1.0, 1.0, 1.0], [0.0] * 4),  # no spread: 0, not 0 / epsilon
        ([1.0, NAN, NAN, NAN], [0.0] * 4),  # one scored row has no std: 0
    ],
)
def test_group_advantages(rewards, expected):
    """The reference's (r - mean) / (std + 1e-6), Bessel-corrected std, per group of 4."""
    got = group_advantages(T(rewards), 4, epsilon=1e-6)
    assert torch.allclose(got, T(expected), atol=1e-5), got
    assert torch.allclose(group_advantages(T(rewards * 2), 4), T(expected * 2), atol=1e-5)  # groups independent


@pytest.mark.parametrize(
    "rewards, expected",
    [
        ([1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0], [False, True, True]),  # mixed, all pass, all fail
        ([1.0, NAN, 1.0, 0.0, NAN, 1.0, NAN, NAN, 0.0], [True, False, True]),  # NaN ignored; one scored row: none
    ],
)
def test_zero_signal_groups(rewards, expected):
    assert zero_signal_groups(T(rewards), 3).tolist() == expected


def test_sequence_logprob_keys():
    logps = T([[-1.0, -1.0, -9.0], [-0.5, -0.5, -0.5]])
    mask = T([[1, 1, 0], [1, 1, 1]])
    assert close(sequence_logprob(logps, mask, "mean"), [-1.0, -0.5])
    assert close(sequence_logprob(logps, mask, "sum"), [-2.0, -1.5])


@pytest.mark.parametrize("bad", [dict(group_size=3), dict(rank_set="some")])
def test_bad_arguments_are_named(bad):
    args = dict(rewards=T([1.0, 0.0, 1.0, 0.0]), keys=T([0.0, 1.0, 2.0, 3.0]), group_size=4, beta_rank=0.25) | bad
    with pytest.raises(ValueError, match="group|rank set"):
        unlikeliness_factors(**args)


def test_factor_bounds():
    g = torch.Generator().manual_seed(2)
    for group in (2, 5, 32):
        rewards = torch.ones(group)
        factors = unlikeliness_factors(rewards, torch.randn(group, generator=g), group, 0.25)
        assert math.isclose(factors.max().item(), 1.0) and math.isclose(
            factors.min().item(), 1 - 0.25 * (group - 1) / group, rel_tol=1e-6
        )
