"""Refuse distributed set-ups that do not leave each parameter's full gradient in ``p.grad``.

The rank allocator (PEFT's ``update_and_allocate`` and ours) reads every adapter parameter's gradient from
``p.grad`` after ``optimizer.step()``. Under DeepSpeed (every ZeRO stage: the engine reduces gradients into its own
buffers, ZeRO-2/3 partition them across processes, and ``engine.step()`` zeroes them) and under FSDP (gradients
sharded with the parameters) ``p.grad`` is a shard or empty, so the scores, and the masks built from them, would
be silently wrong. Supported: a single process, and DDP (every process holds the full, all-reduced gradient).
"""

from __future__ import annotations

from typing import Any

from accelerate.utils import DistributedType

__all__ = ["check_full_gradients", "current_distributed_type"]

_UNSUPPORTED = {
    DistributedType.DEEPSPEED: (
        "DeepSpeed (ZeRO partitions the gradients and its engine steps and zeroes them)",
        "run `accelerate config` again and answer no to DeepSpeed, or launch without --use_deepspeed / a DeepSpeed "
        "config file",
    ),
    DistributedType.FSDP: (
        "FSDP (gradients are sharded with the parameters; FSDP2 support is not there yet)",
        "run `accelerate config` again and choose multi-GPU (DDP) without FSDP, or launch with --multi_gpu",
    ),
}


def check_full_gradients(distributed_type: Any) -> None:
    """Raise a RuntimeError for a set-up whose ``p.grad`` is not the full gradient (see the module docstring).

    Args:
        distributed_type: accelerate's ``DistributedType`` (``accelerator.distributed_type``), or None.
    """
    if distributed_type not in _UNSUPPORTED:
        return
    what, fix = _UNSUPPORTED[distributed_type]
    raise RuntimeError(
        f"AdaLoRA's rank allocation needs each adapter parameter's full gradient in p.grad, which {what} does not "
        "provide: the importance scores and the rank masks would be silently wrong. Supported: a single process, "
        f"or DDP (accelerate launch --multi_gpu). To fix it, {fix}."
    )


def current_distributed_type() -> Any:
    """accelerate's distributed type if its state was initialised in this process (by ``Accelerator``,
    ``PartialState`` or transformers' ``TrainingArguments``), else None; initialises nothing."""
    from accelerate.state import PartialState

    return PartialState._shared_state.get("distributed_type")
