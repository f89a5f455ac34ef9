"""The shim between PEFT's ``AdaLoraModel.update_and_allocate`` and our allocator.

PEFT's ``AdaLoraModel`` keeps a ``rankallocator`` and, at every ``update_and_allocate(global_step)``, calls on it
(peft 0.13 - 0.21, ``peft/tuners/adalora/model.py``):

* ``update_and_allocate(model, step)`` while ``step < total_step − tfinal``, and writes a returned rank pattern
  into ``peft_config.rank_pattern``;
* ``update_and_allocate(model, step, force_mask=True)`` then ``reset_ipt()`` at ``step == total_step − tfinal``;
* ``mask_using_rank_pattern(model, peft_config.rank_pattern)`` at every later step.

:class:`PeftRankAllocator` implements exactly those methods (plus ``set_total_step``) on top of the
framework-free :class:`~adalora_scores.allocation.ScoreRankAllocator`, so PEFT's own phases drive it unchanged.
Rank patterns are PEFT's ``{lora_E parameter name: [kept?] * r}``, which are the layout's matrix names.
"""

from __future__ import annotations

import warnings
from typing import Any

from adalora_scores.adapter.distributed.backend import Backend
from adalora_scores.adapter.distributed.single import SingleProcessBackend
from adalora_scores.adapter.per_example.collector import PerExampleGradients
from adalora_scores.allocation.allocator import ScoreRankAllocator
from adalora_scores.allocation.layout import TripletLayout
from adalora_scores.allocation.schedule import BudgetSchedule
from adalora_scores.scores.base import Score

__all__ = ["PeftRankAllocator", "schedule_from_peft_config"]


def schedule_from_peft_config(config: Any, layout: TripletLayout) -> BudgetSchedule:
    """The budget schedule an ``AdaLoraConfig`` describes for ``layout``: b(0) = every triplet, b(T) = target_r
    per matrix, and PEFT's ``tinit``/``tfinal``/``deltaT``/``total_step`` as our names."""
    return BudgetSchedule(
        initial_budget=layout.num_triplets,
        target_budget=config.target_r * len(layout.matrices),
        budget_warmup=config.tinit,
        budget_final=config.tfinal,
        total_steps=config.total_step,
        mask_interval=config.deltaT,
    )


class PeftRankAllocator(ScoreRankAllocator):
    """A :class:`ScoreRankAllocator` that PEFT's ``AdaLoraModel`` can call as its ``rankallocator``.

    Args:
        layout: the flat triplet layout of the adapted matrices (names = PEFT rank-pattern keys).
        score: the element score.
        peft_config: the trained adapter's ``AdaLoraConfig``; its schedule fields are read once here, and
            :meth:`set_total_step` updates both.
        adapter_name: the trained adapter's name (the suffix of the rank-pattern keys).
        reactivation, task_gradient_only: see :class:`ScoreRankAllocator`.
        per_example: the hooks that collect each step's per-example gradient moments, when the score or
            ``task_gradient_only`` needs them; consumed at every step until the final allocation, then removed.
        backend: how the parameters are split across processes; it finds the current parameters at every call.
    """

    def __init__(
        self,
        layout: TripletLayout,
        score: Score,
        peft_config: Any,
        adapter_name: str = "default",
        reactivation: bool = True,
        task_gradient_only: bool = False,
        per_example: PerExampleGradients | None = None,
        backend: Backend | None = None,
    ) -> None:
        schedule = schedule_from_peft_config(peft_config, layout)
        super().__init__(layout, score, schedule, reactivation, task_gradient_only)
        if self.needs_moments and per_example is None:
            raise ValueError(
                f"score {score.name!r} needs per-example gradients: pass a PerExampleGradients "
                "collector (adalora_scores.attach builds one)."
            )
        self.peft_config = peft_config
        self.adapter_name = adapter_name
        self.per_example = per_example
        self.backend = backend if backend is not None else SingleProcessBackend()

    def follow_parameters(self) -> bool:
        """As :meth:`ScoreRankAllocator.follow_parameters`, and the per-example collector's sums follow too."""
        moved = super().follow_parameters()
        if moved and self.per_example is not None:
            self.per_example.to(self.layout.device)
        return moved

    def follow_model(self, model: Any) -> None:
        """Point the layout at the adapter parameters ``model`` (the transformers model inside the PEFT model)
        holds now, should a wrapper (FSDP2) have replaced them (:meth:`Backend.follow`), and move the allocator's
        tensors to their device (:meth:`follow_parameters`). PEFT's calls do this first."""
        self.backend.follow(self.layout, model)
        self.follow_parameters()

    # -- PEFT's RankAllocator interface -----------------------------------------------------------------------------
    def set_total_step(self, total_step: int) -> None:
        self.peft_config.total_step = total_step
        self.set_total_steps(total_step)

    def update_and_allocate(
        self, model: Any = None, global_step: int = 0, force_mask: bool = False
    ) -> tuple[int, dict[str, list[bool]] | None]:
        """One optimizer step: returns ``(budget, rank_pattern or None)`` like PEFT's
        ``RankAllocator.update_and_allocate``. ``model`` (PEFT passes its transformers model) is where the
        layout finds the current parameters, should a wrapper (FSDP2) have replaced them, and their device
        (:meth:`follow_model`)."""
        self.follow_model(model)
        moments = None
        if self.per_example is not None:
            moments = self.per_example.consume()  # every step (it all-reduces), so that the sums restart
        event = self.step_to(global_step, force_mask=force_mask, moments=moments)
        if force_mask:
            self.frozen = True  # PEFT calls reset_ipt() right after
            self.close_per_example()
        if event is None:
            return self.schedule.at(global_step)[0], None
        return event.budget, self.rank_pattern()

    def discard_step(self) -> None:
        """The optimizer skipped this step (GradScaler overflow, or ``nonfinite=skip``): forget its per-example
        gradients."""
        if self.per_example is not None:
            self.per_example.discard()

    def close_per_example(self) -> None:
        """The scores are frozen: remove the per-example hooks (they cost time at every step)."""
        if self.per_example is not None:
            self.per_example.close()
            self.per_example = None

    def reset_ipt(self) -> None:
        """Called by PEFT once the pattern is frozen: the statistics are no longer needed."""
        self.score.reset()

    def mask_using_rank_pattern(self, model: Any, rank_pattern: dict[str, list[bool]] | None) -> None:
        """Re-apply the frozen pattern (every final-phase step).

        If ``rank_pattern`` is None (the final step T − t_f was never reached exactly, PEFT issue #855), the
        allocation at the target budget is done now and written to the config instead of failing.
        """
        self.follow_model(model)
        if rank_pattern is None:
            warnings.warn(
                f"update_and_allocate reached the final phase at step {self.step} without the final allocation "
                f"at step {self.schedule.final_step}; allocating now at the target budget. Pass optimizer steps "
                "(not micro-batches or samples) to update_and_allocate.",
                stacklevel=2,
            )
            self.mask_to_budget(self.target_budget)
            self.freeze()
            self.close_per_example()
            self.peft_config.rank_pattern = self.rank_pattern()
            return
        if rank_pattern is not self._keep_by_matrix:
            self.set_keep(self.keep_from_matrices(self._full_names(rank_pattern)))
            self._keep_by_matrix = rank_pattern
            return
        self.apply_keep()

    # -- rank patterns ---------------------------------------------------------------------------------------------
    def rank_pattern(self) -> dict[str, list[bool]]:
        """``{lora_E parameter name: [kept?] * r}``, the format PEFT saves in ``adapter_config.json``."""
        return self.keep_by_matrix()

    def _full_names(self, rank_pattern: dict[str, list[bool]]) -> dict[str, list[bool]]:
        """PEFT writes keys with the adapter name (``...lora_E.default``) and may read them without it."""
        suffix = f".{self.adapter_name}"
        return {(key if key.endswith(suffix) else f"{key}{suffix}"): value for key, value in rank_pattern.items()}
