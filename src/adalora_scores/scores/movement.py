"""Movement: how strongly each entry is pushed away from zero."""

from __future__ import annotations

import torch
from torch import Tensor

from adalora_scores.scores.base import Score, check_beta, ema_, register_score


@register_score("movement")
class Movement(Score):
    """Signed movement score (Sanh, Wolf & Rush, "Movement Pruning", NeurIPS 2020, eq. 3).

    ::

        I  = −w · g                    signed: > 0 when the step moves w away from 0 (keep), < 0 towards 0 (prune)
        Ī ← β1 · Ī + (1 − β1) · I
        s  = Ī                         (default)
        s  = Ī · Ū, Ū ← β2 · Ū + (1 − β2) · |I − Ī|     (with ``use_uncertainty=True``; Ū ≥ 0 keeps the sign)

    Estimator: one mini-batch gradient per optimizer step, smoothed with AdaLoRA's EMA instead of Sanh's running
    sum (an EMA forgets early steps, which the budget schedule needs; a constant factor would not change rankings).
    The score is never passed through ``abs``: the allocator's global threshold ranks signed values, so a
    triplet that shrinks towards zero ranks below one that is untouched.

    Args:
        beta1: EMA coefficient of the movement (default 0.85, AdaLoRA's β1).
        beta2: EMA coefficient of the uncertainty, used only when ``use_uncertainty`` is True.
        use_uncertainty: multiply by AdaLoRA's uncertainty Ū. Off by default: Ū amplifies noisy triplets in both
            directions, which for a signed score pushes uncertain shrinking triplets further down.
    """

    statistics = ("importance", "uncertainty")

    def __init__(self, beta1: float = 0.85, beta2: float = 0.85, use_uncertainty: bool = False) -> None:
        super().__init__()
        self.beta1 = check_beta("beta1", beta1)
        self.beta2 = check_beta("beta2", beta2)
        if not isinstance(use_uncertainty, bool):
            raise ValueError(f"use_uncertainty must be True or False, got {use_uncertainty!r}.")
        self.use_uncertainty = use_uncertainty

    def update(self, param: Tensor, grad: Tensor) -> None:
        movement = torch.mul(param, grad, out=self.workspace(0)).neg_()
        ema_(self.importance, movement, self.beta1, scratch=self.workspace(1))
        if self.use_uncertainty:
            ema_(self.uncertainty, movement.sub_(self.importance).abs_(), self.beta2, scratch=self.workspace(1))

    def element_scores(self, param: Tensor) -> Tensor:
        if self.use_uncertainty:
            return torch.mul(self.importance, self.uncertainty, out=self.workspace(0))
        return self.importance
