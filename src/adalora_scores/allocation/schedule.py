"""The global rank budget over training: AdaLoRA's cubic schedule, as a pure function and a small value object."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["BudgetSchedule", "budget_schedule"]


def budget_schedule(
    step: int,
    *,
    initial_budget: int,
    target_budget: int,
    budget_warmup: int,
    budget_final: int,
    total_steps: int,
    mask_interval: int,
) -> tuple[int, bool]:
    """Return ``(budget, should_mask)`` at optimizer step ``step``.

    AdaLoRA, Appendix A, eq. (14), in the form the original code uses (``loralib`` ``schedule_threshold``; the
    paper prints ``t − t_i − t_f`` in the numerator, a typo)::

        b(t) = b(0)                                                     if t ≤ t_i                (warm-up)
        b(t) = b(T)                                                     if t > T − t_f            (final, frozen)
        b(t) = ⌊(b(0) − b(T)) · (1 − (t − t_i) / (T − t_f − t_i))³ + b(T)⌋   otherwise              (budgeting)

    Masking happens during budgeting every ``mask_interval`` steps (``t mod ΔT = 0``) and at every final-phase step.

    Names: ``budget_warmup`` = t_i, ``budget_final`` = t_f (a duration), ``mask_interval`` = ΔT, ``total_steps``
    = T, all in optimizer steps. (Configs also accept the AdaLoRA code's names ``tinit``, ``tfinal``, ``deltaT``.)

    Example (T = 100, t_i = 10, t_f = 20, b(0) = 24, b(T) = 8): steps 0-10 keep 24; step 50 gives
    ⌊16 · 0.5³ + 8⌋ = 10; steps 81-100 keep 8.
    """
    if total_steps - budget_final - budget_warmup <= 0:
        raise ValueError(
            f"the schedule has no budgeting phase: budget_warmup ({budget_warmup}) + budget_final ({budget_final}) "
            f"steps must be fewer than total_steps ({total_steps}). Decrease budget_warmup or budget_final (tinit, "
            "tfinal), or train longer."
        )
    if step <= budget_warmup:
        return initial_budget, False
    if step > total_steps - budget_final:
        return target_budget, True
    remaining = 1 - (step - budget_warmup) / (total_steps - budget_final - budget_warmup)
    budget = int((initial_budget - target_budget) * (remaining**3) + target_budget)
    return budget, step % mask_interval == 0


@dataclass(frozen=True)
class BudgetSchedule:
    """One run's schedule, in optimizer steps (see :func:`budget_schedule` for the formula and the names)."""

    initial_budget: int
    target_budget: int
    budget_warmup: int
    budget_final: int
    total_steps: int
    mask_interval: int

    def __post_init__(self) -> None:
        if self.total_steps <= 0:
            raise ValueError(f"total_steps must be the positive number of optimizer steps, got {self.total_steps}.")
        if not 0 <= self.target_budget <= self.initial_budget:
            raise ValueError(
                f"target budget {self.target_budget} must be between 0 and the initial budget "
                f"{self.initial_budget}; the budget only shrinks (target_r <= init_r)."
            )
        if self.mask_interval < 1:
            raise ValueError(f"mask_interval (deltaT) must be >= 1 optimizer step, got {self.mask_interval}.")
        if self.budget_warmup >= self.total_steps - self.budget_final:
            raise ValueError(
                f"no budgeting phase: budget_warmup ({self.budget_warmup}) >= total_steps ({self.total_steps}) - "
                f"budget_final ({self.budget_final}). Decrease budget_warmup or budget_final (tinit, tfinal), or "
                "train longer."
            )

    @property
    def final_step(self) -> int:
        """T − t_f: the step of the last allocation, after which the pattern is frozen."""
        return self.total_steps - self.budget_final

    def at(self, step: int) -> tuple[int, bool]:
        """``(budget, should_mask)`` at optimizer step ``step``."""
        return budget_schedule(
            step,
            initial_budget=self.initial_budget,
            target_budget=self.target_budget,
            budget_warmup=self.budget_warmup,
            budget_final=self.budget_final,
            total_steps=self.total_steps,
            mask_interval=self.mask_interval,
        )
