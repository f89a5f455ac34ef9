"""AdaLoRA's own score: smoothed sensitivity times uncertainty."""

from __future__ import annotations

import torch
from torch import Tensor

from adalora_scores.scores.base import Score, check_beta, ema_, register_score


@register_score("sensitivity")
class Sensitivity(Score):
    """Sensitivity with uncertainty (Zhang et al., AdaLoRA, ICLR 2023, eqs. 10-13; from PLATON, ICML 2022).

    With w an adapter entry and g = ∂L/∂w from the current mini-batch::

        I  = |w · g|                         (eq. 10)
        Ī ← β1 · Ī + (1 − β1) · I            (eq. 11)
        Ū ← β2 · Ū + (1 − β2) · |I − Ī|       (eq. 12; uses the already updated Ī, as both reference codes do)
        s  = Ī · Ū                           (eq. 13)

    Estimator: one mini-batch gradient per optimizer step, exactly as PEFT's ``RankAllocator.update_ipt`` and the
    original ``loralib`` code; the statistics start at zero with no bias correction. With ``score="sensitivity"``
    the allocator reproduces PEFT's decisions (see ``tests/adapter/test_peft_parity.py``).

    Args:
        beta1: EMA coefficient of the sensitivity Ī (paper and PEFT default 0.85).
        beta2: EMA coefficient of the uncertainty Ū (paper and PEFT default 0.85).
    """

    statistics = ("importance", "uncertainty")

    def __init__(self, beta1: float = 0.85, beta2: float = 0.85) -> None:
        super().__init__()
        self.beta1 = check_beta("beta1", beta1)
        self.beta2 = check_beta("beta2", beta2)

    def update(self, param: Tensor, grad: Tensor) -> None:
        sensitivity = torch.mul(param, grad, out=self.workspace(0)).abs_()
        ema_(self.importance, sensitivity, self.beta1, scratch=self.workspace(1))
        deviation = sensitivity.sub_(self.importance).abs_()  # reuses the buffer: |I − Ī|
        ema_(self.uncertainty, deviation, self.beta2, scratch=self.workspace(1))

    def element_scores(self, param: Tensor) -> Tensor:
        return torch.mul(self.importance, self.uncertainty, out=self.workspace(0))
