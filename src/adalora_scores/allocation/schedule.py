"""The global rank budget over training: AdaLoRA's cubic schedule, as a pure function."""

from __future__ import annotations

__all__ = ["budget_schedule"]


def budget_schedule(
    step: int,
    *,
    initial_budget: int,
    target_budget: int,
    warmup_steps: int,
    final_steps: int,
    total_steps: int,
    mask_interval: int,
) -> tuple[int, bool]:
    """Return ``(budget, should_mask)`` at optimizer step ``step``.

    AdaLoRA, Appendix A, eq. (14), in the form both reference codes use (PEFT ``RankAllocator.budget_schedule`` and
    ``loralib``'s ``schedule_threshold``; the paper prints ``t − t_i − t_f`` in the numerator, a typo)::

        b(t) = b(0)                                                     if t ≤ t_i                (warm-up)
        b(t) = b(T)                                                     if t > T − t_f            (final, frozen)
        b(t) = ⌊(b(0) − b(T)) · (1 − (t − t_i) / (T − t_f − t_i))³ + b(T)⌋   otherwise              (budgeting)

    Masking happens during budgeting every ``mask_interval`` steps (``t mod ΔT = 0``) and at every final-phase step.

    Names map to PEFT's ``AdaLoraConfig``: ``warmup_steps`` = tinit (t_i), ``final_steps`` = tfinal (t_f, a
    duration), ``mask_interval`` = deltaT (ΔT), ``total_steps`` = total_step (T).

    Example (PEFT's docstring example): T = 100, t_i = 10, t_f = 20, b(0) = 24, b(T) = 8. Steps 0-10 keep 24;
    step 50 gives ⌊16 · 0.5³ + 8⌋ = 10; steps 81-100 keep 8.
    """
    if total_steps - final_steps - warmup_steps <= 0:
        raise ValueError(
            f"the schedule has no budgeting phase: warm-up ({warmup_steps}) + final ({final_steps}) steps must be "
            f"fewer than total_steps ({total_steps}). Decrease tinit/tfinal or increase total_step."
        )
    if step <= warmup_steps:
        return initial_budget, False
    if step > total_steps - final_steps:
        return target_budget, True
    remaining = 1 - (step - warmup_steps) / (total_steps - final_steps - warmup_steps)
    budget = int((initial_budget - target_budget) * (remaining**3) + target_budget)
    return budget, step % mask_interval == 0
