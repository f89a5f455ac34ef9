"""The adapter a run trains: its :class:`~adalora_scores.adapter.peft.spec.AdapterSpec` from the run's config, and
what the engine cannot do under the chosen distributed backend."""

from __future__ import annotations

from dataclasses import fields

from adalora_scores.adapter.distributed import Backend
from adalora_scores.adapter.peft.spec import AdapterSpec
from adalora_scores.config import TrainConfig, budget_steps

__all__ = ["adapter_spec", "check_engine_run"]


def adapter_spec(config: TrainConfig, total_steps: int, modules_to_save: tuple[str, ...] = ()) -> AdapterSpec:
    """The adapter ``config`` trains over ``total_steps`` optimizer steps. The settings of the same name are copied
    (one name per idea); the budget phases become steps (:func:`~adalora_scores.config.budget_steps`, AdaLoRA only,
    which raises if no budgeting phase is left); ``config.modules_to_save``, or when None the task's head
    (``modules_to_save``); gradient accumulation divides the loss."""
    warmup, final = budget_steps(config, total_steps) if config.method == "adalora" else (0, 0)
    saved = tuple(config.modules_to_save if config.modules_to_save is not None else modules_to_save)
    shared = {field.name: getattr(config, field.name) for field in fields(AdapterSpec) if hasattr(config, field.name)}
    given = {"total_steps": total_steps, "budget_warmup": warmup, "budget_final": final, "modules_to_save": saved}
    given |= {"score_options": dict(config.score_options), "loss_divisor": config.gradient_accumulation_steps}
    return AdapterSpec(**(shared | given))


def check_engine_run(backend: Backend, resume: bool, checkpoint_every: int | None, nonfinite: str) -> None:
    """Raise a ValueError naming every engine feature ``backend`` cannot serve, before any work: checkpoints and
    ``--resume`` need its :meth:`~Backend.training_state`, and ``nonfinite=skip`` a step that has not been taken
    inside ``backward`` (:attr:`~Backend.steps_in_backward`)."""
    fixes = []
    if resume and not backend.saves_training_state:
        fixes.append("--resume: start the run again without it")
    if checkpoint_every != 0 and not backend.saves_training_state:
        fixes.append(f"checkpoints (checkpoint_every={checkpoint_every}): set checkpoint_every=0")
    if nonfinite == "skip" and backend.steps_in_backward:
        fixes.append(f"nonfinite=skip ({backend.title} has stepped before the guard runs): set nonfinite=stop")
    if fixes:
        raise ValueError(f"under {backend.title} the engine does not support " + "; ".join(fixes) + ".")
