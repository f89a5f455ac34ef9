"""PEFT: building AdaLoRA, SVD-LoRA and LoRA models, attaching a score, the rank-allocator shim, saving, target
modules, 4-bit bases and the ``transformers.Trainer`` callback."""

from adalora_scores.adapter.peft.attach import adalora_model, attach, find_adapted_matrices, validate_adalora_config
from adalora_scores.adapter.peft.build import AdaptedModel, build_adapted_model
from adalora_scores.adapter.peft.callback import AllocationCallback
from adalora_scores.adapter.peft.peft_allocator import PeftRankAllocator
from adalora_scores.adapter.peft.saving import load_adapter, save_adapter

__all__ = [
    "AdaptedModel",
    "AllocationCallback",
    "PeftRankAllocator",
    "adalora_model",
    "attach",
    "build_adapted_model",
    "find_adapted_matrices",
    "load_adapter",
    "save_adapter",
    "validate_adalora_config",
]
