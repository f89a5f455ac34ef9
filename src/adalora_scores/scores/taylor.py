"""First-order Taylor saliency, squared."""

from __future__ import annotations

import torch
from torch import Tensor

from adalora_scores.scores.base import Score, check_beta, ema_, register_score


@register_score("taylor")
class Taylor(Score):
    """Squared first-order Taylor saliency, s = EMA of (w · g)² (Molchanov et al., CVPR 2019, "Taylor FO"; the
    OBD-style w² × Fisher saliency of Theis et al. 2018 with the empirical Fisher g²).

    ::

        T ← β · T + (1 − β) · (w · g)²,     s = T

    (w g)² estimates the loss change from removing w to second order under the Fisher approximation of the
    Hessian, so it is the pruning-consistent form of Fisher: unlike ``fisher`` (E[g²]) it vanishes for a zeroed
    entry. Estimator: the mini-batch gradient once per optimizer step (the square of a mini-batch gradient weights
    the noise by 1/B: E[ḡ²] = μ² + σ²/B).

    Args:
        beta: EMA coefficient (default 0.85, as AdaLoRA's β1).
    """

    statistics = ("saliency",)

    def __init__(self, beta: float = 0.85) -> None:
        super().__init__()
        self.beta = check_beta("beta", beta)

    def update(self, param: Tensor, grad: Tensor) -> None:
        ema_(
            self.saliency,
            torch.mul(param, grad, out=self.workspace(0)).square_(),
            self.beta,
            scratch=self.workspace(1),
        )

    def element_scores(self, param: Tensor) -> Tensor:
        return self.saliency
