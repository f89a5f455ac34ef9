"""The stateful allocator: observes gradients through a score, and keeps the best triplets under the schedule.

It works on plain objects only (a :class:`TripletLayout`, a :class:`~adalora_scores.Score` and a
:class:`BudgetSchedule`) and returns :class:`AllocationEvent` values; it knows no training framework. The adapter
package wraps it in the interface its host library calls.

One optimizer step t (:meth:`ScoreRankAllocator.step_to`), with T − t_f the schedule's ``final_step``:

* ``t < T − t_f``: the score observes (param, grad); on mask steps the b(t) best triplets keep their λ;
* ``t == T − t_f``: a forced allocation at b(T), after which the pattern is frozen (see :meth:`freeze`);
* ``t > T − t_f``: the frozen pattern is re-applied.

The allocator's tensors (the layout's buffers, the score's statistics, the mask) live on the adapter's device, and
follow it (:meth:`ScoreRankAllocator.follow_parameters`) when the model moves after the allocator was built, as when
accelerate's ``prepare`` moves a model attached on the CPU to the GPU.

Steps are numbered 1 … T, counting the optimizer step that just happened. The original AdaLoRA trainer passes
0 … T−1 to its allocator instead; with 1 … T the forced final allocation at T − t_f happens even with t_f = 0.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from adalora_scores.allocation.layout import TripletLayout
from adalora_scores.allocation.ranking import budget_threshold, keep_mask
from adalora_scores.allocation.schedule import BudgetSchedule
from adalora_scores.scores.base import GradientMoments, Score

__all__ = ["AllocationEvent", "ScoreRankAllocator"]


@dataclass(frozen=True)
class AllocationEvent:
    """What one masking step decided; returned values for loggers (the allocator never logs)."""

    step: int
    budget: int
    threshold: float
    kept: int
    ranks: dict[str, int]


class ScoreRankAllocator:
    """Scores the SVD triplets with any :class:`~adalora_scores.Score` and keeps the top ``budget`` globally.

    Args:
        layout: the flat triplet layout of the adapted matrices.
        score: the element score.
        schedule: the budget schedule in optimizer steps.
        reactivation: AdaLoRA lets a pruned triplet come back when its score recovers (default). With False,
            a triplet pruned at one allocation stays pruned at every later one.
        task_gradient_only: the score sees the task-loss gradient, the mean m1 of the per-example gradients,
            instead of ``p.grad``. ``p.grad`` also holds the orthogonal regulariser's gradient, the same for every
            example and, for P and Q of a pruned triplet, the only gradient there is. m1 is taken before clipping.
    """

    def __init__(
        self,
        layout: TripletLayout,
        score: Score,
        schedule: BudgetSchedule,
        reactivation: bool = True,
        task_gradient_only: bool = False,
    ) -> None:
        if schedule.initial_budget != layout.num_triplets:
            raise ValueError(
                f"the schedule starts at {schedule.initial_budget} triplets but the layout holds "
                f"{layout.num_triplets}; build the schedule from this layout."
            )
        self.layout = layout
        self.score = score
        self.schedule = schedule
        self.reactivation = reactivation
        self.task_gradient_only = task_gradient_only
        self.step = 0
        self.keep = torch.ones(layout.num_triplets, dtype=torch.bool, device=layout.device)
        self.frozen = False
        self.skipped_updates = 0  # steps whose gradient was not finite (not observed)
        self.last_event: AllocationEvent | None = None
        self.last_triplet_scores: Tensor | None = None  # the scores the last allocation ranked
        self._keep_by_matrix: dict[str, list[bool]] | None = None
        score.bind(layout)

    @property
    def initial_budget(self) -> int:
        return self.schedule.initial_budget

    @property
    def target_budget(self) -> int:
        return self.schedule.target_budget

    def set_total_steps(self, total_steps: int) -> None:
        """Change T (e.g. once the data size is known); the other schedule values stay."""
        self.schedule = dataclasses.replace(self.schedule, total_steps=int(total_steps))

    def budget_schedule(self, step: int) -> tuple[int, bool]:
        """``(budget, should_mask)`` at ``step`` (see :func:`~adalora_scores.budget_schedule`)."""
        return self.schedule.at(step)

    @property
    def needs_moments(self) -> bool:
        """Whether each step needs the per-example gradient moments (a per-example score, or the task gradient)."""
        return self.score.gradient == "per_example" or self.task_gradient_only

    def follow_parameters(self) -> bool:
        """Move the layout's buffers, the score's statistics and the mask to the device the adapter parameters
        are on now, keeping their values; every entry point calls it, so this is only needed by code that reads the
        allocator's tensors itself. Returns whether anything moved (a device comparison otherwise)."""
        device = self.layout.parameter_device
        if device == self.layout.device:
            return False
        self.layout.to(device)
        self.score.to(device)
        self.keep = self.keep.to(device)
        if self.last_triplet_scores is not None:
            self.last_triplet_scores = self.last_triplet_scores.to(device)
        return True

    # -- one optimizer step ------------------------------------------------------------------------------------------
    def step_to(
        self, step: int, force_mask: bool = False, moments: GradientMoments | None = None
    ) -> AllocationEvent | None:
        """Optimizer step ``step`` has just happened: observe its gradients (before T − t_f), then mask if the
        schedule says so or ``force_mask``. ``moments``: the step's per-example gradient moments, needed when
        :attr:`needs_moments`. Returns the allocation event, or None when nothing was masked."""
        self.follow_parameters()
        self.step = int(step)
        if step < self.schedule.final_step:
            self.update_scores(moments)
        budget, should_mask = self.schedule.at(step)
        if not (should_mask or force_mask):
            return None
        self.mask_to_budget(budget)
        return self.last_event

    def update_scores(self, moments: GradientMoments | None = None) -> None:
        """Feed this step's (param, grad) and, when needed, its per-example moments to the score. A gradient with
        NaN/Inf (e.g. the unscaled gradient of an fp16 step the GradScaler skipped, under ``transformers.Trainer``)
        is not observed: a warning names the step, and the statistics stay as they were instead of being poisoned
        for the rest of the run."""
        if self.needs_moments and moments is None:
            raise ValueError(
                f"step {self.step}: score {self.score.name!r}"
                + (" with task_gradient_only" if self.task_gradient_only else "")
                + " needs the per-example gradient moments of the step; attach it with adalora_scores.attach(), "
                "which installs the per-example hooks."
            )
        with torch.no_grad():
            if self.task_gradient_only:
                grads = moments.mean
            else:
                grads = self.layout.gather_gradients()
            check = grads.sum() if moments is None else grads.sum() + moments.mean_square.sum()
            if not torch.isfinite(check):  # NaN/Inf anywhere makes the sum non-finite; no 2.6M-entry mask
                self.skipped_updates += 1
                warnings.warn(
                    f"adalora-scores: step {self.step}: non-finite adapter gradient; the score statistics skip this "
                    "step.",
                    stacklevel=3,
                )
                return
            self.score.observe(self.layout.gather_parameters(), grads, moments)

    def triplet_scores(self) -> Tensor:
        """Current importance S of every triplet (flat, in ``layout.matrices`` order)."""
        self.follow_parameters()
        with torch.no_grad():
            element_scores = self.score.element_scores(self.layout.gather_parameters())
            scores = self.layout.triplet_scores(element_scores)
            if not self.reactivation:
                scores = scores.masked_fill(~self.keep, float("-inf"))
            return scores

    def mask_to_budget(self, budget: int) -> Tensor:
        """Keep the ``budget`` highest-scoring triplets across all matrices; zero λ of the rest."""
        self.follow_parameters()
        scores = self.triplet_scores()
        self.last_triplet_scores = scores
        threshold = budget_threshold(scores, budget)
        self.set_keep(keep_mask(scores, threshold))
        ranks = self.ranks()
        self.last_event = AllocationEvent(self.step, int(budget), threshold, sum(ranks.values()), ranks)
        return self.keep

    def set_keep(self, keep: Tensor) -> None:
        """Make ``keep`` (flat bool, one entry per triplet) the current mask and apply it."""
        self.follow_parameters()
        self.keep = keep.to(device=self.layout.device, dtype=torch.bool)
        self._keep_by_matrix = None
        self.apply_keep()

    def apply_keep(self) -> None:
        """Zero λ of every triplet the current mask prunes (again: training moves λ away from 0)."""
        self.follow_parameters()
        self.layout.apply_keep_mask(self.keep)

    def freeze(self) -> None:
        """The final allocation is done: the pattern no longer changes and the statistics are released."""
        self.frozen = True
        self.score.reset()

    def keep_by_matrix(self) -> dict[str, list[bool]]:
        """``{matrix name: [kept?] * r}`` under the current mask (cached until the mask changes)."""
        if self._keep_by_matrix is None:
            keep = self.keep.cpu()  # one device-to-host copy for all matrices
            self._keep_by_matrix = {name: k.tolist() for name, k in self.layout.split_by_matrix(keep).items()}
        return self._keep_by_matrix

    def keep_from_matrices(self, pattern: dict[str, list[bool]]) -> Tensor:
        """The flat mask for ``{matrix name: [kept?] * r}``; raises if a matrix is missing or has another rank."""
        rows = []
        for name, rank in zip(self.layout.names, self.layout.ranks, strict=True):
            if name not in pattern:
                raise KeyError(f"the rank pattern has no entry for {name!r}; it belongs to another model.")
            row = torch.as_tensor(pattern[name], dtype=torch.bool)
            if row.numel() != rank:
                raise ValueError(f"the rank pattern of {name!r} has {row.numel()} entries, not {rank}.")
            rows.append(row)
        self.follow_parameters()
        return torch.cat(rows).to(self.layout.device)

    # -- state ---------------------------------------------------------------------------------------------------
    def ranks(self) -> dict[str, int]:
        """Kept rank of every adapted matrix under the current mask."""
        counts = torch.stack([k.sum() for k in self.layout.split_by_matrix(self.keep.long()).values()]).tolist()
        return dict(zip(self.layout.names, counts, strict=True))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly: step, score statistics, current mask, frozen flag."""
        return {
            "step": self.step,
            "score": self.score.state_dict(),
            "score_options": self.score.options(),
            "keep": self.keep.detach().cpu().clone(),
            "frozen": self.frozen,
            "matrices": list(self.layout.names),
            "reactivation": self.reactivation,
            "task_gradient_only": self.task_gradient_only,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; refuses a state of another model or score."""
        self.follow_parameters()
        if list(state["matrices"]) != self.layout.names:
            raise ValueError("allocator state was saved for other adapted matrices; attach to the same model setup.")
        if state["score_options"] != self.score.options():
            raise ValueError(
                f"allocator state was saved with score options {state['score_options']}, "
                f"but the attached score has {self.score.options()}."
            )
        self.score.load_state_dict(state["score"])
        self.keep = state["keep"].to(device=self.layout.device, dtype=torch.bool).clone()
        self._keep_by_matrix = None
        self.step = int(state["step"])
        self.frozen = bool(state["frozen"])
        self.reactivation = bool(state["reactivation"])
        if bool(state.get("task_gradient_only", False)) != self.task_gradient_only:
            raise ValueError("allocator state was saved with another task_gradient_only setting; attach the same way.")

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(score={self.score!r}, matrices={len(self.layout.matrices)}, "
            f"budget {self.initial_budget} -> {self.target_budget}, reactivation={self.reactivation})"
        )
