"""The settings an adapter is built from (:func:`~adalora_scores.adapter.peft.build.build_adapted_model`): the
library's own, so building one needs no application config. The training engine makes one from its run config
(``adalora_scores.engine.adapter.adapter_spec``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["METHODS", "AdapterSpec"]

METHODS = ("adalora", "svd_lora", "lora")


@dataclass(frozen=True)
class AdapterSpec:
    """AdaLoRA, or a baseline without allocation, with PEFT's settings; the schedule is in optimizer steps.

    Raises:
        ValueError: a setting out of range; the message names it and the range.
    """

    method: str = "adalora"
    """"adalora"; "svd_lora" (P Λ Q at rank ``target_r``, never allocated) or "lora" (B A of rank ``target_r``)."""
    init_r: int = 16
    """AdaLoRA's initial rank of every matrix."""
    target_r: int = 8
    """AdaLoRA's final average rank; the baselines' rank."""
    lora_alpha: float = 32.0
    """α as PEFT takes it: the update is scaled by α / init_r (AdaLoRA) or α / target_r (the baselines)."""
    lora_dropout: float = 0.0
    target_modules: str | list[str] | None = None
    """None: every attention and MLP matrix; a preset name (``adapter/peft/targets.py``); module names or a regex."""
    modules_to_save: tuple[str, ...] = ()
    """Modules trained fully besides the adapter (the task head)."""
    orth_reg_weight: float = 0.1
    """γ of the orthogonality regulariser (AdaLoRA and SVD-LoRA)."""
    total_steps: int = 0
    """Optimizer steps of the run [PEFT ``total_step``]; AdaLoRA's schedule checks that a budgeting phase is left."""
    budget_warmup: int = 0
    """Steps before the budget starts to fall [PEFT ``tinit``]."""
    budget_final: int = 0
    """Final steps with a frozen pattern [PEFT ``tfinal``]."""
    mask_interval: int = 10
    """Steps between two allocations [PEFT ``deltaT``]."""
    beta1: float = 0.85
    beta2: float = 0.85
    """EMA coefficients of the sensitivity and its uncertainty (AdaLoRA eq. 11, 12)."""
    score: str = "sensitivity"
    """The registered score that ranks the triplets (AdaLoRA)."""
    score_options: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    """The run's seed, for a score seeded by the run unless ``score_options`` gives one."""
    task_gradient_only: bool = False
    """The score sees the task-loss gradient (:func:`~adalora_scores.adapter.peft.attach.attach`)."""
    loss_divisor: int = 1
    """What each micro-batch's loss is divided by (the gradient accumulation steps), for per-example gradients."""

    def __post_init__(self) -> None:
        baseline = self.method != "adalora"
        for bad, message in (
            (self.method not in METHODS, f"method must be one of {METHODS}, got {self.method!r}."),
            (self.init_r < 1, f"init_r must be >= 1, got {self.init_r}."),
            (
                not 0 <= self.target_r <= self.init_r,
                f"target_r ({self.target_r}) must be in [0, init_r={self.init_r}].",
            ),
            (baseline and self.target_r < 1, f"method={self.method} needs target_r >= 1 (its rank)."),
            (not 0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}."),
            (self.orth_reg_weight < 0, f"orth_reg_weight must be >= 0, got {self.orth_reg_weight}."),
            (not 0 <= self.beta1 < 1 or not 0 <= self.beta2 < 1, "beta1 and beta2 must be in [0, 1) (AdaLoRA: 0.85)."),
            (min(self.mask_interval, self.loss_divisor) < 1, "mask_interval and loss_divisor must be >= 1."),
        ):
            if bad:
                raise ValueError(message)
