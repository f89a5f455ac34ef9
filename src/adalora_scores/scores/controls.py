"""Control rows: scores that allocate at random, to tell "this score allocates well" from "any allocation does".

Both follow the same budget schedule, masking and final freeze as every other score; only *which* triplets they
keep is random. They read no gradient.

* ``random``: one uniform priority per triplet, drawn once per run. Under a shrinking budget the kept sets are then
  nested (the top b(t) of fixed priorities contain the top b(t + 1)), so, like a consistent score, it only prunes:
  its churn is 0. It differs from a real score in which triplets it keeps, not in how often it changes its mind.
* ``random_redrawn``: new priorities at every allocation, so the kept set changes at every mask step (maximal
  churn). It tests churn as well as choice.

The priorities come from a generator of their own, seeded by ``seed`` (the training engine passes the run's
seed), so drawing them moves no other random stream: dropout and data order are those of every other score on the
same seed. The priorities (``random``) and the generator state (``random_redrawn``) are part of the score's state,
so a resumed run continues bit-exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from adalora_scores.scores.base import Score, register_score

if TYPE_CHECKING:
    from adalora_scores.allocation.layout import TripletLayout

__all__ = ["RandomPriority", "RedrawnRandomPriority"]


def _check_seed(seed: int | None) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or null (the run's seed), got {seed!r}.")
    return seed


class _RandomControl(Score):
    """Shared plumbing: the generator, and element scores that carry a triplet's priority on its λ entry (0 on P
    and Q), so that S_i = s(λ_i) + mean s(P[:, i]) + mean s(Q[i, :]) = priority_i exactly."""

    seeded_by_run: ClassVar[bool] = True

    def __init__(self, seed: int | None = None) -> None:
        super().__init__()
        self.seed = _check_seed(seed)
        self.generator: torch.Generator | None = None

    def bind(self, layout: TripletLayout) -> None:
        super().bind(layout)
        # a CPU generator on every device: the same priorities for a seed on CPU and GPU
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(self.seed if self.seed is not None else torch.initial_seed())
        self._is_value = layout.value_entries()

    def draw(self) -> Tensor:
        """A flat tensor shaped like the adapter: U(0, 1) priorities on the λ entries, 0 elsewhere."""
        priorities = torch.rand(self.layout.num_triplets, generator=self.generator)
        scores = self.workspace(0).zero_()
        scores[self._is_value] = priorities.to(scores.device)
        return scores

    def update(self, param: Tensor, grad: Tensor) -> None:
        pass


@register_score("random")
class RandomPriority(_RandomControl):
    """Control: a fixed uniform random priority per triplet, drawn once per run from ``seed`` (the run's seed when
    None is given to the engine). The kept sets are nested, churn 0 (module docstring).

    The priorities are drawn when the score is bound to the adapter and kept as the statistic ``priority``; unlike
    the statistics of a real score they are not zeroed when the pattern is frozen, since they are what the score
    *is*, not what it observed.

    Args:
        seed: seed of the priorities; None: ``torch.initial_seed()`` (the engine always passes the run's seed).
    """

    statistics = ("priority",)

    def bind(self, layout: TripletLayout) -> None:
        super().bind(layout)
        self.priority.copy_(self.draw())

    def element_scores(self, param: Tensor) -> Tensor:
        return self.priority

    def reset(self) -> None:
        self.num_updates = 0


@register_score("random_redrawn")
class RedrawnRandomPriority(_RandomControl):
    """Control: new uniform random priorities for every triplet at every allocation, from a generator seeded by
    ``seed``; the kept set changes at every mask step (module docstring).

    Args:
        seed: seed of the generator; None: ``torch.initial_seed()`` (the engine always passes the run's seed).
    """

    def element_scores(self, param: Tensor) -> Tensor:
        return self.draw()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "generator" not in state:
            raise ValueError("random_redrawn state has no generator state; was it saved by another score?")
        self.generator.set_state(state["generator"])
