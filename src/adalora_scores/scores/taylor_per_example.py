"""Squared first-order Taylor saliency from per-example gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from adalora_scores.scores.base import GradientMoments, Score, check_beta, ema_, register_score


@register_score("taylor_per_example")
class TaylorPerExample(Score):
    """Squared Taylor saliency averaged over examples, s = E_n[(w · ∂ℓ_n/∂w)²] (Molchanov et al., CVPR 2019,
    "Taylor FO"; Theis et al. 2018's OBD-style w² × empirical Fisher).

    ::

        (1/N) Σ_n (w · g_n)² = w² · m2          (w is the same for every example of the step)
        T ← β · T + (1 − β) · w² · m2,     s = T

    The per-example counterpart of ``taylor``, whose (w · ḡ)² weights the gradient noise by 1/B. w is the entry
    after the optimizer step, as for every score (the allocator reads scores after ``optimizer.step()``).

    Args:
        beta: EMA coefficient (default 0.85, as ``taylor``).
    """

    gradient = "per_example"
    statistics = ("saliency",)

    def __init__(self, beta: float = 0.85) -> None:
        super().__init__()
        self.beta = check_beta("beta", beta)

    def update_moments(self, param: Tensor, moments: GradientMoments) -> None:
        squared_weight = torch.mul(param, param, out=self.workspace(0))
        ema_(self.saliency, squared_weight.mul_(moments.mean_square), self.beta)

    def element_scores(self, param: Tensor) -> Tensor:
        return self.saliency
