"""Refuse distributed set-ups under which the allocator cannot see each adapter parameter's full gradient.

The rank allocator (PEFT's ``update_and_allocate`` and ours) reads every adapter parameter's gradient after
``optimizer.step()``. Supported:

* a single process, and DDP: every process holds the full, all-reduced gradient in ``p.grad``;
* FSDP2 (``torch.distributed.fsdp.fully_shard``; accelerate's FSDP plugin with ``fsdp_version=2``): ``p.grad`` is a
  ``DTensor`` shard of the averaged gradient, which :mod:`.fsdp` gathers whole for the scores
  (the adapter is small) before writing the mask into every process's shard;
* DeepSpeed ZeRO stage 3 (``zero_optimization.stage: 3``): :mod:`.deepspeed` reads the full
  gradient and fp32 value from DeepSpeed's optimizer and writes the mask into both copies of λ.

Refused, because ``p.grad`` is a shard or empty there and the scores, and the masks built from them, would be
silently wrong: DeepSpeed ZeRO stages 0 - 2 (the engine reduces gradients into its optimizer's buffers and
``engine.step()`` zeroes ``p.grad``; the allocator reads neither, untested), and FSDP1 (``FullyShardedDataParallel``:
flat parameters, whose ``p.grad`` under ``use_orig_params`` is this process's piece of the flat gradient, or None).
"""

from __future__ import annotations

from typing import Any

from accelerate.utils import DistributedType

__all__ = ["check_full_gradients", "current_distributed_type", "current_fsdp_version", "current_zero_stage"]

_SUPPORTED = (
    "Supported: a single process, DDP (accelerate launch --multi_gpu), DeepSpeed ZeRO stage 3, or FSDP2 "
    "(fsdp_version: 2)"
)

_UNSUPPORTED = {
    DistributedType.DEEPSPEED: (
        "DeepSpeed ZeRO stage {stage} (the engine keeps the reduced gradients in its optimizer and zeroes p.grad)",
        "set `zero_stage: 3` in the deepspeed_config of your accelerate config (or zero_optimization.stage: 3 in "
        "the DeepSpeed config file), or launch without DeepSpeed (--multi_gpu: DDP)",
    ),
    DistributedType.FSDP: (
        "FSDP1 (FullyShardedDataParallel flattens and shards the gradients)",
        "set `fsdp_version: 2` in the fsdp_config of your accelerate config (see the README's FSDP2 section), or "
        "launch with --multi_gpu (DDP)",
    ),
}


def check_full_gradients(
    distributed_type: Any, fsdp_version: int | None = None, zero_stage: int | None = None
) -> None:
    """Raise a RuntimeError for a set-up whose gradients the allocator cannot read whole (module docstring).

    Args:
        distributed_type: accelerate's ``DistributedType`` (``accelerator.distributed_type``), or None.
        fsdp_version: with ``DistributedType.FSDP``, the FSDP plugin's ``fsdp_version``; None reads it from
            accelerate's state (:func:`current_fsdp_version`), and a version that cannot be read counts as FSDP1
            (accelerate's default).
        zero_stage: with ``DistributedType.DEEPSPEED``, the ZeRO stage; None reads it from accelerate's state
            (:func:`current_zero_stage`), and a stage that cannot be read is refused.
    """
    if distributed_type == DistributedType.DEEPSPEED:
        stage = zero_stage if zero_stage is not None else current_zero_stage()
        if stage == 3:
            return
    if distributed_type == DistributedType.FSDP:
        version = fsdp_version if fsdp_version is not None else current_fsdp_version()
        if version == 2:
            return
    if distributed_type not in _UNSUPPORTED:
        return
    what, fix = _UNSUPPORTED[distributed_type]
    if distributed_type == DistributedType.DEEPSPEED:
        what = what.format(stage=stage if stage is not None else "unknown (no DeepSpeed plugin found)")
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


def current_zero_stage() -> int | None:
    """The ZeRO stage of accelerate's active DeepSpeed plugin if an ``Accelerator`` set one up in this process
    (``zero_optimization.stage`` of its config, else the plugin's ``zero_stage``), else None; initialises nothing."""
    from accelerate.state import AcceleratorState

    plugins = AcceleratorState._shared_state.get("deepspeed_plugins")
    if isinstance(plugins, dict):  # several named plugins: the selected one
        plugins = next((p for p in plugins.values() if getattr(p, "selected", False)), None)
    if plugins is None:
        return None
    stage = getattr(plugins, "deepspeed_config", {}).get("zero_optimization", {}).get("stage", plugins.zero_stage)
    return None if stage is None or stage == "auto" else int(stage)
