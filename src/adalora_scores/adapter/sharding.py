"""Refuse distributed set-ups under which the allocator cannot see each adapter parameter's full gradient.

The rank allocator (PEFT's ``update_and_allocate`` and ours) reads every adapter parameter's gradient after
``optimizer.step()``. Supported:

* a single process, and DDP: every process holds the full, all-reduced gradient in ``p.grad``;
* FSDP2 (``torch.distributed.fsdp.fully_shard``; accelerate's FSDP plugin with ``fsdp_version=2``): ``p.grad`` is a
  ``DTensor`` shard of the averaged gradient, which :mod:`adalora_scores.adapter.fsdp` gathers whole for the scores
  (the adapter is small) before writing the mask into every process's shard.

Refused, because ``p.grad`` is a shard or empty there and the scores, and the masks built from them, would be
silently wrong: DeepSpeed (every ZeRO stage: the engine reduces gradients into its own buffers, ZeRO-2/3 partition
them across processes, and ``engine.step()`` zeroes them), and FSDP1 (``FullyShardedDataParallel``: flat parameters,
whose ``p.grad`` under ``use_orig_params`` is this process's piece of the flat gradient, or None).
"""

from __future__ import annotations

from typing import Any

from accelerate.utils import DistributedType

__all__ = ["check_full_gradients", "current_distributed_type", "current_fsdp_version"]

_SUPPORTED = "Supported: a single process, DDP (accelerate launch --multi_gpu), or FSDP2 (fsdp_version: 2)"

_UNSUPPORTED = {
    DistributedType.DEEPSPEED: (
        "DeepSpeed (ZeRO partitions the gradients and its engine steps and zeroes them)",
        "run `accelerate config` again and answer no to DeepSpeed, or launch without --use_deepspeed / a DeepSpeed "
        "config file",
    ),
    DistributedType.FSDP: (
        "FSDP1 (FullyShardedDataParallel flattens and shards the gradients)",
        "set `fsdp_version: 2` in the fsdp_config of your accelerate config (see the README's FSDP2 section), or "
        "launch with --multi_gpu (DDP)",
    ),
}


def check_full_gradients(distributed_type: Any, fsdp_version: int | None = None) -> None:
    """Raise a RuntimeError for a set-up whose gradients the allocator cannot read whole (module docstring).

    Args:
        distributed_type: accelerate's ``DistributedType`` (``accelerator.distributed_type``), or None.
        fsdp_version: with ``DistributedType.FSDP``, the FSDP plugin's ``fsdp_version``; None reads it from
            accelerate's state (:func:`current_fsdp_version`), and a version that cannot be read counts as FSDP1
            (accelerate's default).
    """
    if distributed_type == DistributedType.FSDP:
        version = fsdp_version if fsdp_version is not None else current_fsdp_version()
        if version == 2:
            return
    if distributed_type not in _UNSUPPORTED:
        return
    what, fix = _UNSUPPORTED[distributed_type]
    raise RuntimeError(
        f"AdaLoRA's rank allocation needs each adapter parameter's full gradient, which {what} does not "
        f"provide: the importance scores and the rank masks would be silently wrong. {_SUPPORTED}. "
        f"To fix it, {fix}."
    )


def current_distributed_type() -> Any:
    """accelerate's distributed type if its state was initialised in this process (by ``Accelerator``,
    ``PartialState`` or transformers' ``TrainingArguments``), else None; initialises nothing."""
    from accelerate.state import PartialState

    return PartialState._shared_state.get("distributed_type")


def current_fsdp_version() -> int | None:
    """The ``fsdp_version`` of accelerate's FSDP plugin if an ``Accelerator`` set one up in this process, else None;
    initialises nothing."""
    from accelerate.state import AcceleratorState

    plugin = AcceleratorState._shared_state.get("fsdp_plugin")
    version = getattr(plugin, "fsdp_version", None)
    return int(version) if version is not None else None
