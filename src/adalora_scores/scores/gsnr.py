"""Gradient signal-to-noise ratio."""

from __future__ import annotations

import torch
from torch import Tensor

from adalora_scores.scores.base import Score, check_beta, ema_, register_score


def check_gsnr_options(eps: float, bounded: bool) -> tuple[float, bool]:
    """``(eps, bounded)`` checked, with errors that say what to pass."""
    if not (isinstance(eps, (int, float)) and eps > 0):
        raise ValueError(f"eps must be a positive float (relative to the scale of E[g^2]), got {eps!r}.")
    if not isinstance(bounded, bool):
        raise ValueError(f"bounded must be True or False, got {bounded!r}.")
    return float(eps), bounded


@register_score("gsnr")
class GSNR(Score):
    """Gradient signal-to-noise ratio, s(w) = E[g]² / Var[g] (Liu et al., ICLR 2020; streaming estimator as in
    GENIE, ICML 2025, which tracks EMAs of g and g²).

    ::

        m1 ← β · m1 + (1 − β) · g,     m2 ← β · m2 + (1 − β) · g²
        m̂1 = m1 / (1 − βᵗ),            m̂2 = m2 / (1 − βᵗ)              (bias correction, t = number of updates)
        r  = m̂1² / (max(m̂2 − m̂1², 0) + ε)
        ε  = eps · mean(m̂2 over the block) + tiny

    Estimator: mini-batch gradients across steps, so the variance is the step-to-step variance of the mini-batch
    gradient (≈ σ²/B plus drift of the mean). This ranks like the per-example GSNR up to the factor B. ε is relative
    to the scale of m̂2 within each block of the layout (λ, P, Q of one matrix shape), because LoRA gradient variances
    are ~1e-8 and an absolute ε (cockpit's 1e-5) would swamp them.

    Args:
        beta: EMA coefficient of both moments. Default 0.9 (β ≥ 0.9): a variance from the effective ~6.7 samples of
            β = 0.85 is very noisy.
        eps: relative stabiliser (default 1e-6).
        bounded: return r / (1 + r) = m̂1² / (m̂2 + ε) ∈ [0, 1] instead of r. This caps the entries whose gradient is
            nearly deterministic (for example P and Q of a pruned triplet, moved only by the orthogonal
            regulariser), which otherwise dominate the mean over a triplet's vector.
    """

    statistics = ("first_moment", "second_moment")

    def __init__(self, beta: float = 0.9, eps: float = 1e-6, bounded: bool = False) -> None:
        super().__init__()
        self.beta = check_beta("beta", beta)
        self.eps, self.bounded = check_gsnr_options(eps, bounded)

    def update(self, param: Tensor, grad: Tensor) -> None:
        ema_(self.first_moment, grad, self.beta, scratch=self.workspace(1))
        ema_(self.second_moment, torch.mul(grad, grad, out=self.workspace(0)), self.beta, scratch=self.workspace(1))

    def element_scores(self, param: Tensor) -> Tensor:
        correction = 1.0 - self.beta**self.num_updates if self.num_updates else 1.0
        signal = torch.div(self.first_moment, correction, out=self.workspace(0)).square_()  # m̂1²
        second = torch.div(self.second_moment, correction, out=self.workspace(1))  # m̂2
        stabiliser = self.layout.block_means(second, out=self.workspace(2)).mul_(self.eps)
        stabiliser.add_(torch.finfo(second.dtype).tiny)
        noise = second if self.bounded else second.sub_(signal).clamp_(min=0.0)
        return signal.div_(noise.add_(stabiliser))
