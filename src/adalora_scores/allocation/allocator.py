"""The stateful allocator: a drop-in replacement for PEFT's ``RankAllocator`` with a pluggable score."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from adalora_scores.allocation.layout import TripletLayout
from adalora_scores.allocation.ranking import budget_threshold, keep_mask
from adalora_scores.allocation.schedule import budget_schedule
from adalora_scores.scores.base import Score

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

    It implements the methods PEFT's ``AdaLoraModel.update_and_allocate`` calls on its ``rankallocator``
    (``update_and_allocate``, ``reset_ipt``, ``mask_using_rank_pattern``, ``set_total_step``), so after
    :func:`adalora_scores.attach` PEFT's own phases drive it unchanged:

    * ``step < T − t_f``: the score observes (param, grad); on mask steps the b(t) best triplets keep their λ;
    * ``step == T − t_f``: a forced allocation at b(T), then the pattern is frozen and the statistics reset;
    * ``step > T − t_f``: the frozen pattern is re-applied (from a cached tensor, not from Python lists).

    Args:
        layout: the flat triplet layout of the adapted matrices.
        score: the element score.
        peft_config: the ``AdaLoraConfig`` (read live, so ``set_total_step`` takes effect).
        adapter_name: the trained adapter's name (the suffix of the rank-pattern keys).
        reactivation: AdaLoRA lets a pruned triplet come back when its score recovers (default). With False,
            a triplet pruned at one allocation stays pruned at every later one.
    """

    def __init__(
        self,
        layout: TripletLayout,
        score: Score,
        peft_config: Any,
        adapter_name: str = "default",
        reactivation: bool = True,
    ) -> None:
        self.layout = layout
        self.adapter_name = adapter_name
        self.score = score
        self.peft_config = peft_config
        self.reactivation = reactivation
        self.initial_budget = layout.num_triplets
        self.target_budget = peft_config.target_r * len(layout.matrices)
        self.step = 0
        self.keep = torch.ones(layout.num_triplets, dtype=torch.bool, device=layout.device)
        self.frozen = False
        self.skipped_updates = 0  # steps whose gradient was not finite (not observed)
        self.last_event: AllocationEvent | None = None
        self._rank_pattern: dict[str, list[bool]] | None = None
        score.bind(layout)

    # -- the PEFT RankAllocator interface ------------------------------------------------------------------------
    def set_total_step(self, total_step: int) -> None:
        self.peft_config.total_step = total_step

    def budget_schedule(self, step: int) -> tuple[int, bool]:
        config = self.peft_config
        return budget_schedule(
            step,
            initial_budget=self.initial_budget,
            target_budget=self.target_budget,
            warmup_steps=config.tinit,
            final_steps=config.tfinal,
            total_steps=config.total_step,
            mask_interval=config.deltaT,
        )

    def update_and_allocate(
        self, model: Any = None, global_step: int = 0, force_mask: bool = False
    ) -> tuple[int, dict[str, list[bool]] | None]:
        """One optimizer step: observe the gradients, then mask if the schedule says so.

        Returns ``(budget, rank_pattern or None)`` like PEFT's ``RankAllocator.update_and_allocate``. ``model`` is
        accepted for interface compatibility; the parameters were collected once in the layout.
        """
        self.step = int(global_step)
        if global_step < self.peft_config.total_step - self.peft_config.tfinal:
            self.update_scores()
        budget, should_mask = self.budget_schedule(global_step)
        if not (should_mask or force_mask):
            return budget, None
        self.mask_to_budget(budget)
        if force_mask:
            self.frozen = True
        return budget, self.rank_pattern()

    def update_scores(self) -> None:
        """Feed this step's (param, grad) to the score. A gradient with NaN/Inf (e.g. the unscaled gradient of an
        fp16 step the GradScaler skipped, under ``transformers.Trainer``) is not observed: a warning names the step,
        and the statistics stay as they were instead of being poisoned for the rest of the run."""
        with torch.no_grad():
            grads = self.layout.gather_gradients()
            if not torch.isfinite(grads.sum()):  # NaN/Inf anywhere makes the sum non-finite; no 2.6M-entry mask
                self.skipped_updates += 1
                warnings.warn(
                    f"adalora-scores: step {self.step}: non-finite adapter gradient; the score statistics skip this "
                    "step.",
                    stacklevel=3,
                )
                return
            self.score.observe(self.layout.gather_parameters(), grads)

    def triplet_scores(self) -> Tensor:
        """Current importance S of every triplet (flat, in ``layout.matrices`` order)."""
        with torch.no_grad():
            element_scores = self.score.element_scores(self.layout.gather_parameters())
            scores = self.layout.triplet_scores(element_scores)
            if not self.reactivation:
                scores = scores.masked_fill(~self.keep, float("-inf"))
            return scores

    def mask_to_budget(self, budget: int) -> Tensor:
        """Keep the ``budget`` highest-scoring triplets across all matrices; zero λ of the rest."""
        scores = self.triplet_scores()
        threshold = budget_threshold(scores, budget)
        self.keep = keep_mask(scores, threshold)
        self.layout.apply_keep_mask(self.keep)
        self._rank_pattern = None
        ranks = self.ranks()
        self.last_event = AllocationEvent(self.step, int(budget), threshold, sum(ranks.values()), ranks)
        return self.keep

    def rank_pattern(self) -> dict[str, list[bool]]:
        """``{lora_E parameter name: [kept?] * r}``, the format PEFT saves in ``adapter_config.json``."""
        if self._rank_pattern is None:
            keep = self.keep.cpu()  # one device-to-host copy for all matrices
            self._rank_pattern = {name: k.tolist() for name, k in self.layout.split_by_matrix(keep).items()}
        return self._rank_pattern

    def reset_ipt(self) -> None:
        """Called by PEFT once the pattern is frozen: the statistics are no longer needed."""
        self.score.reset()

    def mask_using_rank_pattern(self, model: Any, rank_pattern: dict[str, list[bool]] | None) -> None:
        """Re-apply the frozen pattern (every final-phase step).

        If ``rank_pattern`` is None (the final step T − t_f was never reached exactly, PEFT issue #855), the
        allocation at the target budget is done now and written to the config instead of failing.
        """
        if rank_pattern is None:
            warnings.warn(
                f"update_and_allocate reached the final phase at step {self.step} without the final allocation "
                f"at step {self.peft_config.total_step - self.peft_config.tfinal}; allocating now at the target "
                "budget. Pass optimizer steps (not micro-batches or samples) to update_and_allocate.",
                stacklevel=2,
            )
            self.mask_to_budget(self.target_budget)
            self.frozen = True
            self.peft_config.rank_pattern = self.rank_pattern()
        elif rank_pattern is not self._rank_pattern:
            self.keep = self._keep_from_pattern(rank_pattern)
            self._rank_pattern = rank_pattern
        self.layout.apply_keep_mask(self.keep)

    def _keep_from_pattern(self, rank_pattern: dict[str, list[bool]]) -> Tensor:
        rows = []
        for name in self.layout.names:
            short = name.replace(f".{self.adapter_name}", "")
            pattern = rank_pattern.get(name, rank_pattern.get(short))
            if pattern is None:
                raise KeyError(f"rank_pattern has no entry for {name!r}; it does not belong to this model.")
            rows.append(torch.as_tensor(pattern, dtype=torch.bool))
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
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; refuses a state of another model or score."""
        if list(state["matrices"]) != self.layout.names:
            raise ValueError("allocator state was saved for other adapted matrices; attach to the same model setup.")
        if state["score_options"] != self.score.options():
            raise ValueError(
                f"allocator state was saved with score options {state['score_options']}, "
                f"but the attached score has {self.score.options()}."
            )
        self.score.load_state_dict(state["score"])
        self.keep = state["keep"].to(device=self.layout.device, dtype=torch.bool).clone()
        self.step = int(state["step"])
        self.frozen = bool(state["frozen"])
        self.reactivation = bool(state["reactivation"])
        self._rank_pattern = None

    def __repr__(self) -> str:
        return (
            f"ScoreRankAllocator(score={self.score!r}, matrices={len(self.layout.matrices)}, "
            f"budget {self.initial_budget} -> {self.target_budget}, reactivation={self.reactivation})"
        )
