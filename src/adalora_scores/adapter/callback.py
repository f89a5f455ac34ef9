"""A ``transformers.Trainer`` callback that runs the rank allocation at the right moment."""

from __future__ import annotations

from torch import nn
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from adalora_scores.adapter.peft import adalora_model

__all__ = ["AllocationCallback"]


class AllocationCallback(TrainerCallback):
    """Calls ``update_and_allocate`` once per optimizer step, after ``optimizer.step()`` and before the gradients
    are zeroed (``Trainer`` fires ``on_optimizer_step`` exactly there; ``on_step_end`` would be too late).

    The step passed is the number of optimizer steps completed, counting this one (``state.global_step + 1``, since
    the Trainer increments ``global_step`` after the callback). Steps therefore run 1 … T, so the forced final
    allocation at T − t_f happens even with ``tfinal=0``. Gradient accumulation is handled by the Trainer: the
    callback fires once per accumulated optimizer step.

    Args:
        model: the PEFT AdaLoRA model being trained (the one passed to ``Trainer``).
    """

    def __init__(self, model: nn.Module) -> None:
        self.adalora = adalora_model(model)

    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs
    ) -> TrainerControl:
        self.adalora.update_and_allocate(state.global_step + 1)
        return control
