"""Keep the per-example collector's sums on the device the model computes on.

accelerate's ``prepare`` (and ``transformers.Trainer``) move the model to the GPU after :func:`~adalora_scores.attach`
ran on the CPU: the engine builds the adapter before ``prepare``, so that PEFT wraps the model before accelerate
(DDP, FSDP2) does. The allocator's own tensors follow the adapter parameters at its next call
(:meth:`~adalora_scores.allocation.ScoreRankAllocator.follow_parameters`), but the per-example collector adds every
layer's per-example gradients, computed on the device of the forward pass, into flat sums during the first backward
pass, before any allocator call. :func:`follow_input_device` moves those sums to the device of the batch at every
forward pass that will be back-propagated (a device comparison when nothing moved).

The collector lives in ``per_example.py``; this module moves its ``_sums`` and adds a hook to its ``_handles`` (which
its ``close()`` removes) from outside, so that the collector's accumulation code stays as it is.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from adalora_scores.adapter.per_example import PerExampleGradients

__all__ = ["follow_input_device", "move_collector"]


def move_collector(collector: PerExampleGradients, device: torch.device) -> None:
    """Move the collector's running sums (values kept) to ``device``."""
    if collector._sums.device != device:
        collector._sums = collector._sums.to(device)


def _first_tensor(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Tensor | None:
    return next((v for v in (*args, *kwargs.values()) if isinstance(v, Tensor)), None)


def follow_input_device(model: nn.Module, collector: PerExampleGradients) -> None:
    """Before each forward pass of ``model`` with gradients enabled, move ``collector``'s sums to the device of its
    first tensor argument (``input_ids``: accelerate and Trainer put the batch on the model's device). The hook is
    removed with the collector's own hooks (``collector.close()``)."""

    def hook(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        batch = _first_tensor(args, kwargs)
        if batch is not None and torch.is_grad_enabled():
            move_collector(collector, batch.device)

    # prepend: before the collector's own pre-hook, which may add the previous micro-batch's pending gradients
    collector._handles.append(model.register_forward_pre_hook(hook, with_kwargs=True, prepend=True))
