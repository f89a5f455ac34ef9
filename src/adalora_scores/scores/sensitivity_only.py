"""AdaLoRA's ablation: smoothed sensitivity without the uncertainty factor."""

from __future__ import annotations

import torch
from torch import Tensor

from adalora_scores.scores.base import Score, check_beta, ema_, register_score


@register_score("sensitivity_only")
class SensitivityOnly(Score):
    """Smoothed sensitivity alone, s = Ī (AdaLoRA, Zhang et al., ICLR 2023, Table 4 ablation "s(·) = I(·)").

    ::

        I = |w · g|,     Ī ← β1 · Ī + (1 − β1) · I,     s = Ī

    The same estimator as ``sensitivity`` (one mini-batch gradient per optimizer step, no bias correction) without
    the uncertainty Ū.

    Args:
        beta1: EMA coefficient (AdaLoRA default 0.85).
    """

    statistics = ("importance",)

    def __init__(self, beta1: float = 0.85) -> None:
        super().__init__()
        self.beta1 = check_beta("beta1", beta1)

    def update(self, param: Tensor, grad: Tensor) -> None:
        ema_(
            self.importance,
            torch.mul(param, grad, out=self.workspace(0)).abs_(),
            self.beta1,
            scratch=self.workspace(1),
        )

    def element_scores(self, param: Tensor) -> Tensor:
        return self.importance
