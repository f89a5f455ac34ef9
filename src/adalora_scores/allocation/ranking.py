"""Triplet importance, the global threshold, keep-masks and their churn: pure functions."""

from __future__ import annotations

from collections.abc import Set

import torch
from torch import Tensor

__all__ = ["budget_threshold", "churn", "keep_mask", "triplet_importance"]


def triplet_importance(value_scores: Tensor, left_scores: Tensor, right_scores: Tensor) -> Tensor:
    """Importance of each triplet (P[:, i], λ_i, Q[i, :]) of a stack of n adapted matrices.

    AdaLoRA eq. (9)::

        S_i = s(λ_i) + (1/d1) Σ_j s(P[j, i]) + (1/d2) Σ_j s(Q[i, j])

    Args:
        value_scores: s(λ), shape (n, r).
        left_scores: s(P), shape (n, d1, r).
        right_scores: s(Q), shape (n, r, d2).

    Returns:
        S, shape (n, r). Summed in the reference order, s(λ) + (mean s(Q) + mean s(P)), so the float values
        match the reference allocator's bit for bit (the parity test lives with the adapter).
    """
    return value_scores + (right_scores.mean(dim=-1) + left_scores.mean(dim=1))


def budget_threshold(scores: Tensor, budget: int) -> float:
    """The score at or below which triplets are pruned so that ``budget`` of ``scores`` remain.

    The k-th smallest value with k = len(scores) − budget, as in AdaLoRA's reference code. Triplets with
    ``score <= threshold`` are pruned, so ties at the threshold can prune more than k (the reference behaves the
    same; it is kept on purpose for parity). Returns −inf when nothing has to be pruned (the reference would fail
    on k = 0).
    """
    num_pruned = scores.numel() - int(budget)
    if num_pruned <= 0:
        return float("-inf")
    if num_pruned >= scores.numel():
        return float("inf")
    return torch.kthvalue(scores.float(), num_pruned).values.item()


def keep_mask(scores: Tensor, threshold: float) -> Tensor:
    """Boolean mask of the triplets that survive: ``score > threshold``."""
    return scores > threshold


def churn(previous: Set, current: Set) -> float | None:
    """churn_t = |K_t \\ K_{t−1}| / |K_t|: the share of the triplets kept at allocation t that were not kept at the
    allocation before; None when nothing is kept. Not the symmetric difference: the budget shrinks on schedule, so
    only triplets that come back show the score changing its mind."""
    return len(current - previous) / len(current) if current else None
