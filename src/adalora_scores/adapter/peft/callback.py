"""A ``transformers.Trainer`` callback that runs the rank allocation at the right moment."""

from __future__ import annotations

import inspect

from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from adalora_scores.adapter.peft.attach import adalora_model

__all__ = ["AllocationCallback"]


class AllocationCallback(TrainerCallback):
    """Calls ``update_and_allocate`` once per optimizer step, after ``optimizer.step()`` and before the gradients
    are zeroed (``Trainer`` fires ``on_optimizer_step`` exactly there; ``on_step_end`` would be too late).

    The step passed is the number of optimizer steps completed, counting this one (``state.global_step + 1``, since
    the Trainer increments ``global_step`` after the callback). Steps therefore run 1 … T, so the forced final
    allocation at T − t_f happens even with ``tfinal=0``. Gradient accumulation is handled by the Trainer: the
    callback fires once per accumulated optimizer step.

    With a per-example score (or ``task_gradient_only``), ``on_step_begin`` tells the per-example hooks what the
    Trainer divides each micro-batch's loss by and, under fp16, the GradScaler's loss scale (read from the
    Trainer's optimizer). The divisor follows ``Trainer.training_step`` (transformers 4.46 - 5.x): the loss is
    divided by ``gradient_accumulation_steps`` unless the model "accepts loss kwargs" (its ``accepts_loss_kwargs``
    attribute, else a ``**kwargs`` in its forward), in which case the Trainer expects the model to normalise by
    ``num_items_in_batch``. A classification head ignores that, so under accumulation those Trainer steps use the
    sum of the micro-batch means; the per-example moments stay those of the examples either way.

    Args:
        model: the PEFT AdaLoRA model being trained (the one passed to ``Trainer``).
    """

    def __init__(self, model: nn.Module) -> None:
        self.adalora = adalora_model(model)

    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> TrainerControl:
        collector = getattr(self.adalora.rankallocator, "per_example", None)
        if collector is not None:
            collector.set_loss_divisor(1 if self._trainer_skips_division() else args.gradient_accumulation_steps)
            scaler = getattr(kwargs.get("optimizer"), "scaler", None)  # accelerate's optimizer holds it under fp16
            if scaler is not None:
                collector.set_loss_scale(float(scaler.get_scale()))
        return control

    def _trainer_skips_division(self) -> bool:
        """Whether ``Trainer`` leaves the accumulated loss undivided (the model accepts loss kwargs)."""
        base = self.adalora.model
        if hasattr(base, "accepts_loss_kwargs"):
            return bool(base.accepts_loss_kwargs)
        parameters = inspect.signature(base.forward).parameters.values()
        return any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters)

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> TrainerControl:
        self.adalora.update_and_allocate(state.global_step + 1)
        return control
