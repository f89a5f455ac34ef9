"""The one package that knows PEFT: building AdaLoRA/LoRA models, finding their triplets, the rank-allocator shim
PEFT calls, rank patterns, and the hooks into training loops (``AllocationCallback``)."""

from adalora_scores.adapter.build import AdaptedModel, build_adapted_model
from adalora_scores.adapter.callback import AllocationCallback
from adalora_scores.adapter.peft import adalora_model, attach, find_adapted_matrices, validate_adalora_config
from adalora_scores.adapter.peft_allocator import PeftRankAllocator
from adalora_scores.adapter.saving import save_adapter

__all__ = [
    "AdaptedModel",
    "AllocationCallback",
    "PeftRankAllocator",
    "adalora_model",
    "attach",
    "build_adapted_model",
    "find_adapted_matrices",
    "save_adapter",
    "validate_adalora_config",
]
