"""The unlikeliness reward (He, Fried, Welleck, EMNLP 2025) as pure tensor functions.

GRPO mostly reinforces proofs the policy already finds likely ("rank bias"), which sharpens the
distribution and costs pass@N at large N. Multiplying a correct proof's 0/1 reward by
``1 - beta_rank * r / G``, where ``r`` is its likelihood rank in its group of ``G`` samples (0 for
the least likely, G-1 for the most likely), makes rare correct proofs worth more.

Every function takes the *gathered* batch: rows come in consecutive groups of ``group_size``, the
layout TRL's GRPOTrainer uses, so the result does not depend on how groups were split over processes.
"""

from __future__ import annotations

from typing import Literal

import torch

RankKey = Literal["mean", "sum"]
RankSet = Literal["all", "correct"]
RANK_KEYS = ("mean", "sum")
RANK_SETS = ("all", "correct")
TieRule = Literal["average", "first"]
TIE_RULES = ("average", "first")


def _groups(t: torch.Tensor, group_size: int, what: str) -> torch.Tensor:
    if t.dim() != 1:
        raise ValueError(f"{what} must be one-dimensional (one value per completion), got shape {tuple(t.shape)}")
    if group_size < 1 or t.numel() % group_size:
        raise ValueError(f"{what} has {t.numel()} rows, not a whole number of groups of {group_size}")
    return t.view(-1, group_size)


def sequence_logprob(per_token_logps: torch.Tensor, mask: torch.Tensor, key: RankKey = "mean") -> torch.Tensor:
    """One ranking key per completion from (B, T) token log-probs and their (B, T) mask.

    ``mean`` (the reference's choice) divides by the completion's length so a long proof is not
    "unlikely" merely for being long; ``sum`` is the sequence log-probability itself.
    """
    if key not in RANK_KEYS:
        raise ValueError(f"rank key must be one of {RANK_KEYS}, got {key!r}")
    mask = mask.to(per_token_logps.dtype)
    total = (per_token_logps * mask).sum(-1)  # (B,)
    if key == "sum":
        return total
    return total / mask.sum(-1).clamp(min=1.0)


def likelihood_ranks(
    keys: torch.Tensor,
    group_size: int,
    include: torch.Tensor | None = None,
    sample_ids: torch.Tensor | None = None,
    ties: TieRule = "average",
) -> torch.Tensor:
    """Rank of each row within its group by ascending key: 0 is the least likely.

    Rows with equal ``sample_ids`` (the same completion sampled twice) first get one key, the mean
    of theirs, since batched forward passes can differ in the last bits for identical sequences.
    Then, with ``ties="average"`` (the reward's rule: the result never depends on the order of rows
    inside a group), rows with equal keys share the average of the ranks they span (two rows tied
    for the bottom both get 0.5); with ``"first"`` they take those ranks one each in row order, as
    a stable sort would. Rows where ``include`` is False are not ranked (NaN) and do not count in
    the ranks of the others. Returns float ranks of shape (N,).
    """
    if ties not in TIE_RULES:
        raise ValueError(f"tie rule must be one of {TIE_RULES}, got {ties!r}")
    k = _groups(keys.float(), group_size, "keys")  # (n, G)
    if sample_ids is not None:
        ids = _groups(sample_ids, group_size, "sample_ids")
        same = (ids[:, :, None] == ids[:, None, :]).float()  # (n, G, G): same[g, i, j] = row j duplicates row i
        k = (same * k[:, None, :]).sum(-1) / same.sum(-1)
    inc = torch.ones_like(k, dtype=torch.bool) if include is None else _groups(include.bool(), group_size, "include")
    other = inc[:, None, :]  # (n, 1, G): which rows j count
    below = ((k[:, None, :] < k[:, :, None]) & other).sum(-1)  # (n, G): rows strictly less likely than row i
    tied = (k[:, None, :] == k[:, :, None]) & other  # (n, G, G): row j counts and ties with row i
    if ties == "first":
        order = torch.arange(k.shape[1], device=k.device)
        ranks = below.float() + (tied & (order[None, :] < order[:, None])).sum(-1).float()
    else:
        ranks = below.float() + (tied.sum(-1).float() - 1).clamp(min=0) / 2
    return torch.where(inc, ranks, torch.full_like(ranks, float("nan"))).view(-1)


def unlikeliness_factors(
    rewards: torch.Tensor,
    keys: torch.Tensor,
    group_size: int,
    beta_rank: float,
    rank_set: RankSet = "all",
    sample_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-row multiplier ``1 - beta_rank * r / G`` for correct rows (reward > 0), 1 elsewhere.

    ``rank_set="all"`` ranks every sample of the group (the reference); ``"correct"`` ranks the
    correct ones among themselves only. Either way the divisor is the group size ``G``, as in the
    paper, so a lone correct proof keeps its full reward under ``"correct"``.
    """
    if rank_set not in RANK_SETS:
        raise ValueError(f"rank set must be one of {RANK_SETS}, got {rank_set!r}")
    correct = rewards > 0  # NaN (verifier error) compares False: never shaped
    include = correct if rank_set == "correct" else None
    ranks = likelihood_ranks(keys, group_size, include=include, sample_ids=sample_ids)
    factors = 1.0 - beta_rank * ranks / group_size
    return torch.where(correct, factors, torch.ones_like(factors))


def shape_rewards(
    rewards: torch.Tensor,
    keys: torch.Tensor,
    group_size: int,
    beta_rank: float,
    rank_set: RankSet = "all",
    sample_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(shaped rewards, factors): correct rows scaled by their factor; wrong and NaN rows unchanged."""
    factors = unlikeliness_factors(rewards, keys, group_size, beta_rank, rank_set, sample_ids)
    shaped = torch.where(rewards > 0, rewards * factors, rewards)
    return shaped, factors


def zero_signal_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """(n_groups,) True where the group's scored rewards are all equal (all pass or all fail).

    Judged on the raw rewards, before shaping: the unlikeliness factor alone would give an
    all-correct group a spread that group normalisation blows up to unit variance, a signal the
    reference never trains on (it drops such groups). NaN rows (verifier errors) are ignored; a
    group with fewer than two scored rows has no signal either.
    """
    r = _groups(rewards.float(), group_size, "rewards")
    scored = ~torch.isnan(r)
    hi = torch.where(scored, r, torch.full_like(r, -float("inf"))).amax(-1)
    lo = torch.where(scored, r, torch.full_like(r, float("inf"))).amin(-1)
    return (scored.sum(-1) < 2) | (hi == lo)


def group_advantages(rewards: torch.Tensor, group_size: int, epsilon: float = 1e-6) -> torch.Tensor:
    """``(reward - group mean) / (group std + epsilon)`` per row, the std with Bessel's correction.

    The reference's normalisation (rewarding-unlikely-release ``_compute_advantages``: ``torch.std``,
    epsilon 1e-6) with TRL's treatment of NaN rows (verifier errors): left out of their group's mean
    and std, advantage 0. A group with a single scored row has std NaN: its advantage is 0 too.
    """
    r = _groups(rewards.float(), group_size, "rewards")  # (n, G)
    scored = ~torch.isnan(r)
    count = scored.sum(-1, keepdim=True)
    mean = torch.nanmean(r, dim=-1, keepdim=True)
    var = torch.where(scored, (r - mean) ** 2, torch.zeros_like(r)).sum(-1, keepdim=True) / (count - 1)
    advantages = (r - mean) / (var.sqrt() + epsilon)
    return torch.nan_to_num(advantages, nan=0.0, posinf=0.0, neginf=0.0).view(-1)
