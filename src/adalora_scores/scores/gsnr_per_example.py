"""Gradient signal-to-noise ratio from per-example gradients."""

from __future__ import annotations

import torch
from torch import Tensor

from adalora_scores.scores.base import GradientMoments, Score, check_beta, ema_, register_score
from adalora_scores.scores.gsnr import check_gsnr_options


@register_score("gsnr_per_example")
class GSNRPerExample(Score):
    """Gradient signal-to-noise ratio over examples, s(w) = E_n[g_n]² / Var_n[g_n] (Liu et al., ICLR 2020, where
    mean and variance are taken over the examples; each step's moments smoothed across steps with an EMA, as the
    streaming estimator of ``gsnr`` does).

    ::

        v  = N/(N − 1) · max(m2 − m1², 0)       (unbiased variance across the N examples of the step)
        M1 ← β · M1 + (1 − β) · m1,     V ← β · V + (1 − β) · v
        M̂1 = M1 / (1 − βᵗ),              V̂ = V / (1 − βᵗ)            (bias correction, t = number of updates)
        r  = M̂1² / (V̂ + ε)
        ε  = eps · mean(V̂ + M̂1² over the block) + tiny

    The variance is the within-step spread of the examples' gradients, so parameter drift between steps does not
    inflate it, unlike ``gsnr``, whose variance is the step-to-step spread of mini-batch gradients (≈ σ²/B + drift).
    ε is relative, as in ``gsnr``: V̂ + M̂1² estimates the per-example second moment E[g²], the quantity ``gsnr``
    scales ε by, averaged within each block of the layout (λ, P, Q of one matrix shape). The orthogonal regulariser
    is not in g_n, so P and Q of a pruned triplet (λ = 0, task gradient 0) get r = 0 instead of the regulariser's
    deterministic gradient over ε.

    Args:
        beta: EMA coefficient of both moments (default 0.9, as ``gsnr``).
        eps: relative stabiliser (default 1e-6).
        bounded: return r / (1 + r) = M̂1² / (V̂ + M̂1² + ε) ∈ [0, 1] instead of r (as ``gsnr``'s option).
    """

    gradient = "per_example"
    min_examples = 2  # a step with one example has no variance across examples: it is not observed
    statistics = ("first_moment", "variance")

    def __init__(self, beta: float = 0.9, eps: float = 1e-6, bounded: bool = False) -> None:
        super().__init__()
        self.beta = check_beta("beta", beta)
        self.eps, self.bounded = check_gsnr_options(eps, bounded)

    def update_moments(self, param: Tensor, moments: GradientMoments) -> None:
        if moments.count < 2:
            raise ValueError(
                f"gsnr_per_example needs at least 2 examples per optimizer step for a variance, got {moments.count}."
            )
        spread = torch.mul(moments.mean, moments.mean, out=self.workspace(0))
        spread = torch.sub(moments.mean_square, spread, out=spread).clamp_(min=0.0)
        ema_(self.first_moment, moments.mean, self.beta)
        ema_(self.variance, spread.mul_(moments.count / (moments.count - 1)), self.beta)

    def element_scores(self, param: Tensor) -> Tensor:
        correction = 1.0 - self.beta**self.num_updates if self.num_updates else 1.0
        signal = torch.div(self.first_moment, correction, out=self.workspace(0)).square_()  # M̂1²
        noise = torch.div(self.variance, correction, out=self.workspace(1))  # V̂
        second = torch.add(noise, signal, out=self.workspace(2))  # V̂ + M̂1² ≈ E[g²]
        stabiliser = self.layout.block_means(second, out=self.workspace(3)).mul_(self.eps)
        stabiliser.add_(torch.finfo(second.dtype).tiny)
        denominator = second if self.bounded else noise
        return signal.div_(denominator.add_(stabiliser))
