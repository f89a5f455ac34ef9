"""Diagonal empirical Fisher information from per-example gradients."""

from __future__ import annotations

from torch import Tensor

from adalora_scores.scores.base import GradientMoments, Score, check_beta, ema_, register_score


@register_score("fisher_per_example")
class FisherPerExample(Score):
    """Diagonal empirical Fisher over examples, s(w) = E_n[(∂ℓ_n/∂w)²] (the study's Fisher; the empirical
    Fisher of Kunstner, Balles and Hennig, NeurIPS 2019, restricted to its diagonal; FISH-mask, Sung et al.,
    NeurIPS 2021, computes it with batch-1 gradients).

    ::

        m2 = (1/N) Σ_n g_n²          (per-example moment of the step, g_n = ∂ℓ_n/∂w, N examples)
        F  ← β · F + (1 − β) · m2,     s = F

    Unlike ``fisher`` (the square of the mini-batch gradient, whose expectation is μ² + σ²/B), m2 estimates
    μ² + σ², the per-example second moment. Same EMA and no bias
    correction, as ``fisher``. The orthogonal regulariser is not in g_n (it is not a per-example loss).

    Args:
        beta: EMA coefficient (default 0.85, AdaLoRA's β1, as ``fisher``).
    """

    gradient = "per_example"
    statistics = ("second_moment",)

    def __init__(self, beta: float = 0.85) -> None:
        super().__init__()
        self.beta = check_beta("beta", beta)

    def update_moments(self, param: Tensor, moments: GradientMoments) -> None:
        ema_(self.second_moment, moments.mean_square, self.beta)

    def element_scores(self, param: Tensor) -> Tensor:
        return self.second_moment
