"""One backend object per distributed set-up, chosen once: everything the allocator and the engine need to know
about how parameters, gradients and optimizer state are split across processes (:class:`Backend` lists it).

Each backend is one file that registers its class in :data:`BACKENDS`: :class:`~.single.SingleProcessBackend` (one
process or DDP, and every set-up no other backend handles), :class:`~.fsdp.FullyShardedBackend` (FSDP2) and
:class:`~.deepspeed.ZeroStage3Backend` (DeepSpeed ZeRO-3). :func:`choose_backend` asks each whether it
:meth:`~Backend.handles` accelerate's distributed type, after refusing the set-ups whose gradients the allocator
cannot read whole (:mod:`.sharding`). A loop that wraps the model itself (``fully_shard`` or ``deepspeed.initialize``
without accelerate) names its backend: ``attach(model, backend="fsdp2")``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from adalora_scores.adapter.distributed import full_state
from adalora_scores.adapter.distributed.sharding import check_full_gradients, current_distributed_type
from adalora_scores.allocation.layout import ParameterAccess, TripletLayout
from adalora_scores.plugins.registry import Registry

__all__ = ["BACKENDS", "Backend", "choose_backend", "first_nonfinite", "resolve_backend"]

BACKENDS: Registry[type[Backend]] = Registry("backend", describe=lambda backend: backend.title)
"""The backend classes by name, as ``attach(model, backend=...)`` takes them; each registers itself in its file."""


class Backend:
    """The interface, implemented for plain (unsharded) parameters."""

    name = "single"
    title = "a single process or DDP"
    """How messages name the set-up."""
    saves_training_state = True
    """Whether :meth:`training_state` and :meth:`load_training_state` work (checkpoints and resuming)."""
    steps_in_backward = False
    """Whether the optimizer has already stepped when ``backward`` returns, so a step cannot be skipped after it."""

    @classmethod
    def handles(cls, distributed_type: Any) -> bool:
        """Whether this backend serves accelerate's ``distributed_type`` (:func:`choose_backend` asks)."""
        return False

    # -- refusals --------------------------------------------------------------------------------------------------
    def check_per_example(self) -> None:
        """Raise if per-example gradient hooks cannot run under this backend."""

    # -- the allocator's view of the parameters -------------------------------------------------------------------
    def parameter_access(self) -> ParameterAccess:
        """How the triplet layout reads full values and gradients, and writes masks."""
        return ParameterAccess()

    def follow(self, layout: TripletLayout, model: nn.Module | None) -> bool:
        """Point ``layout`` at the parameters ``model`` holds now; returns whether it was rebound (never, unless a
        wrapper replaces parameters)."""
        return False

    def prepare_adalora(self, adalora: nn.Module) -> None:
        """Adapt PEFT's ``AdaLoraModel`` to this backend (its orthogonal regulariser)."""

    def numel(self, parameter: nn.Parameter) -> int:
        """The number of entries of the whole parameter."""
        return parameter.numel()

    # -- full state ------------------------------------------------------------------------------------------------
    def trainable_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """``{name: full tensor on the CPU}`` of every trainable parameter, for the adapter file (a collective under
        sharding: every process calls it)."""
        return full_state.full_trainable_state(model)

    def training_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``{"trainable": ..., "optimizer": ...}`` with full tensors, for a checkpoint (a collective)."""
        return full_state.training_state(model, optimizer)

    def load_training_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Restore :meth:`training_state` into ``model`` and ``optimizer`` (a collective)."""
        full_state.load_training_state(model, optimizer, state)

    # -- guards ----------------------------------------------------------------------------------------------------
    def nonfinite_parameter(self, model: nn.Module) -> str | None:
        """The name of a trainable parameter whose gradient of this step holds a NaN or Inf, else None; every
        process gets the same answer (DDP's gradients are all-reduced)."""
        named = [(n, p.grad) for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
        return first_nonfinite(named)


def choose_backend(distributed_type: Any = None) -> Backend:
    """The backend for accelerate's ``distributed_type`` (None: read from accelerate's state in this process, which
    is None before any ``Accelerator``/``TrainingArguments``: a single process): the registered backend that
    :meth:`~Backend.handles` it, else ``"single"``.

    Raises:
        RuntimeError: FSDP1 or DeepSpeed ZeRO stages 0 - 2, which leave no full gradient to read
            (:func:`~.sharding.check_full_gradients`); two registered backends that handle the same type.
    """
    if distributed_type is None:
        distributed_type = current_distributed_type()
    check_full_gradients(distributed_type)
    claims = [name for name in BACKENDS if BACKENDS.get(name).handles(distributed_type)]
    if len(claims) > 1:
        raise RuntimeError(f"backends {claims} all handle {distributed_type}: unregister all but one (BACKENDS).")
    return BACKENDS.get(claims[0] if claims else "single")()


def resolve_backend(backend: Backend | str | None) -> Backend:
    """``backend`` as a :class:`Backend`: an instance as it is, a name from :data:`BACKENDS`, or None for
    :func:`choose_backend`.

    Raises:
        ValueError: an unknown name.
    """
    if isinstance(backend, Backend):
        return backend
    if backend is None:
        return choose_backend()
    if backend not in BACKENDS:
        raise ValueError(
            f"backend={backend!r}: unknown; choose one of {BACKENDS.names()}, or leave it None to take accelerate's "
            "set-up."
        )
    return BACKENDS.get(backend)()


def first_nonfinite(named: list[tuple[str, torch.Tensor]]) -> str | None:
    """The first name in ``named`` whose tensor holds a NaN or Inf (one fused norm when all are finite), else None."""
    if not named or torch.stack(torch._foreach_norm([g for _, g in named])).isfinite().all():
        return None
    return next(n for n, g in named if not torch.isfinite(g).all())
