"""Full (unsharded) trainable weights and optimizer state, for the run folder's adapter and for checkpoints.

Under FSDP2 (``fully_shard``) each process holds only its rows of every parameter (a ``DTensor`` shard) and of the
optimizer's moments, and PEFT's ``save_pretrained`` fails on them (``RuntimeError: Attempted to access the data
pointer on an invalid python storage``). These functions use torch's distributed state-dict API
(``torch.distributed.checkpoint.state_dict``, torch >= 2.4; https://pytorch.org/docs/stable/distributed.checkpoint.html)
with ``StateDictOptions(full_state_dict=True, cpu_offload=True)``: the full tensors are all-gathered to the CPU of
process 0, the only one that writes (the other processes get empty dicts). The same calls work on an unsharded model
(one process, DDP), so a checkpoint holds the same full tensors whatever the set-up, keyed by parameter name:

* weights: the trainable parameters only (``ignore_frozen_params``: the adapter and the head, not the base model);
* optimizer: ``{"state": {name: {...}}, "param_groups": [{..., "params": [name, ...]}]}``. Older checkpoints key the
  optimizer state by parameter index (``optimizer.state_dict()``); they resume unsharded.

Restoring (``set_model_state_dict``/``set_optimizer_state_dict``) takes the full tensors on every process (each one
read the checkpoint) and keeps each process's rows. Gathering and restoring are collectives under FSDP2: every process
must call them, in the same order.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

__all__ = [
    "is_sharded",
    "full_optimizer_state",
    "full_trainable_state",
    "load_full_optimizer_state",
    "load_full_trainable_state",
    "training_state",
    "load_training_state",
]


def is_sharded(tensor: Any) -> bool:
    """Whether ``tensor`` is a ``torch.distributed`` ``DTensor`` (a parameter or gradient under FSDP2)."""
    if not torch.distributed.is_available():
        return False
    from torch.distributed.tensor import DTensor

    return isinstance(tensor, DTensor)


_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)
_LOAD = StateDictOptions(full_state_dict=True, strict=False)  # strict=False: the frozen base is not in the state


def full_trainable_state(model: nn.Module) -> dict[str, Tensor]:
    """``{parameter name: full tensor on the CPU}`` of every trainable parameter of ``model`` (the PEFT model,
    unwrapped from DDP). A collective under FSDP2: every process calls it; only process 0 gets the tensors. (ZeRO-3
    reads DeepSpeed's optimizer instead: :func:`~.deepspeed.zero3_trainable_state`.)"""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True, ignore_frozen_params=True)
    return get_model_state_dict(model, options=options)


def full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state with full tensors on the CPU, keyed by parameter name (a collective under FSDP2)."""
    return get_optimizer_state_dict(model, optimizer, options=_GATHER)


def load_full_trainable_state(model: nn.Module, state: dict[str, Tensor]) -> None:
    """Copy :func:`full_trainable_state` into ``model``'s trainable parameters (each process keeps its rows).

    Raises:
        ValueError: ``state`` holds other trainable parameters than ``model`` has (another config or model).
    """
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    if trainable != set(state):
        missing, extra = sorted(trainable - set(state))[:3], sorted(set(state) - trainable)[:3]
        raise ValueError(
            f"the checkpoint holds other trainable parameters than this model (missing {missing}, unexpected "
            f"{extra}); was the config changed? Resume with the run's own config, or start a new run."
        )
    set_model_state_dict(model, dict(state), options=_LOAD)


def load_full_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore :func:`full_optimizer_state` into ``optimizer`` (each process keeps its rows). A state keyed by
    parameter index (older checkpoints) is loaded as it is, on an unsharded model only.

    Raises:
        ValueError: an index-keyed state for a sharded model.
    """
    groups = state.get("param_groups") or [{}]
    if any(isinstance(key, str) for key in groups[0].get("params", [])):
        set_optimizer_state_dict(model, optimizer, state, options=_LOAD)
        return
    if any(is_sharded(p) for p in model.parameters()):
        raise ValueError(
            "this checkpoint's optimizer state is keyed by parameter index (written by adalora-scores before FSDP2 "
            "support), which cannot be split into FSDP2 shards. Resume it on one process or with DDP "
            "(accelerate launch --multi_gpu); its next checkpoint is keyed by name and resumes under FSDP2."
        )
    optimizer.load_state_dict(state)


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``{"trainable": ..., "optimizer": ...}`` with full tensors, for a checkpoint (a collective under FSDP2)."""
    return {"trainable": full_trainable_state(model), "optimizer": full_optimizer_state(model, optimizer)}


def load_training_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Restore :func:`training_state` (``state`` may hold more keys) into ``model`` and ``optimizer``."""
    load_full_trainable_state(model, state["trainable"])
    load_full_optimizer_state(model, optimizer, state["optimizer"])
