"""The one package that knows PEFT, in three concerns:

* :mod:`~adalora_scores.adapter.peft`: building AdaLoRA/LoRA models, finding their triplets, the rank-allocator
  shim PEFT calls, saving, 4-bit bases, and the hook into ``transformers.Trainer`` (``AllocationCallback``);
* :mod:`~adalora_scores.adapter.per_example`: per-example gradient moments from hooks on the adapted layers;
* :mod:`~adalora_scores.adapter.distributed`: one backend object per set-up (single process/DDP, FSDP2, ZeRO-3).
"""

from adalora_scores.adapter.distributed import Backend, choose_backend
from adalora_scores.adapter.peft import (
    AdaptedModel,
    AllocationCallback,
    PeftRankAllocator,
    adalora_model,
    attach,
    build_adapted_model,
    find_adapted_matrices,
    save_adapter,
    validate_adalora_config,
)

__all__ = [
    "AdaptedModel",
    "AllocationCallback",
    "Backend",
    "PeftRankAllocator",
    "adalora_model",
    "attach",
    "build_adapted_model",
    "choose_backend",
    "find_adapted_matrices",
    "save_adapter",
    "validate_adalora_config",
]
