"""The adapter side: PEFT's AdaLoRA model, its triplets, and the hooks into training."""

from adalora_scores.adapter.callback import AllocationCallback
from adalora_scores.adapter.peft import adalora_model, attach, find_adapted_matrices, validate_adalora_config

__all__ = [
    "AllocationCallback",
    "adalora_model",
    "attach",
    "find_adapted_matrices",
    "validate_adalora_config",
]
