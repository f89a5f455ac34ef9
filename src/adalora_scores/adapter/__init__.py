"""The adapter side: PEFT's AdaLoRA model, its triplets, and the hooks into training."""

from adalora_scores.adapter.callback import AllocationCallback
from adalora_scores.adapter.peft import adalora_model, attach, find_adapted_matrices, validate_adalora_config
from adalora_scores.adapter.saving import save_adapter

__all__ = [
    "AllocationCallback",
    "adalora_model",
    "attach",
    "find_adapted_matrices",
    "save_adapter",
    "validate_adalora_config",
]
