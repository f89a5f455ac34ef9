"""AdaLoRA's ablation: the magnitude of the singular value."""

from __future__ import annotations

import torch
from torch import Tensor

from adalora_scores.scores.base import Score, register_score


@register_score("magnitude")
class Magnitude(Score):
    """Singular-value magnitude, S_i = |λ_i| (AdaLoRA, Zhang et al., ICLR 2023, Table 4 ablation).

    The element score is |λ| on λ entries and 0 on P and Q, so the triplet importance
    S_i = s(λ_i) + mean s(P[:, i]) + mean s(Q[i, :]) reduces to |λ_i|. It keeps no statistics and uses no gradient.
    A pruned triplet has λ = 0, so it never comes back.
    """

    statistics = ()

    def update(self, param: Tensor, grad: Tensor) -> None:
        pass

    def element_scores(self, param: Tensor) -> Tensor:
        if getattr(self, "_is_value", None) is None or self._is_value.numel() != param.numel():
            self._is_value = self.layout.value_entries()
        scores = torch.abs(param, out=self.workspace(0))
        return scores.mul_(self._is_value)
