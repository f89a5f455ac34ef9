"""Diagonal empirical Fisher information."""

from __future__ import annotations

import torch
from torch import Tensor

from adalora_scores.scores.base import Score, check_beta, ema_, register_score


@register_score("fisher")
class Fisher(Score):
    """Diagonal empirical Fisher, s(w) = E[g²] (the score-function study's Fisher score; estimator as in FISH-mask,
    Sung et al., NeurIPS 2021, and Kwon et al., NeurIPS 2022, which both square mini-batch gradients).

    ::

        F ← β · F + (1 − β) · g²,     s = F

    Estimator: the square of the mini-batch gradient g of the mean loss, once per optimizer step. Its expectation
    is μ² + σ²/B (B = batch size), not the per-example μ² + σ², so the noise part is down-weighted by the batch
    size (for the mean of B independent per-example gradients with mean μ and variance σ², E[g²] = μ² + σ²/B).
    Note that s depends on g only: a pruned triplet
    (λ = 0) keeps a large score through ∂L/∂λ and can be re-activated at the next allocation.

    Args:
        beta: EMA coefficient (default 0.85, matching AdaLoRA's β1 so that all scores average over the same window).
    """

    statistics = ("second_moment",)

    def __init__(self, beta: float = 0.85) -> None:
        super().__init__()
        self.beta = check_beta("beta", beta)

    def update(self, param: Tensor, grad: Tensor) -> None:
        ema_(self.second_moment, torch.mul(grad, grad, out=self.workspace(0)), self.beta, scratch=self.workspace(1))

    def element_scores(self, param: Tensor) -> Tensor:
        return self.second_moment
