"""One backend object per distributed set-up, chosen once: everything the allocator and the engine need to know
about how parameters, gradients and optimizer state are split across processes.

* :class:`SingleProcessBackend`: one process, or DDP (every process holds the full, all-reduced gradient in
  ``p.grad``);
* :class:`FullyShardedBackend`: FSDP2 (``torch.distributed.fsdp.fully_shard``; :mod:`.fsdp` has the mechanics);
* :class:`ZeroStage3Backend`: DeepSpeed ZeRO stage 3 (:mod:`.deepspeed` has the mechanics).

:func:`choose_backend` picks one from accelerate's state (the ``Accelerator`` the engine builds, or the one
``transformers.TrainingArguments`` sets up), after refusing the set-ups whose gradients the allocator cannot read
whole (:mod:`.sharding`). A loop that wraps the model itself (``fully_shard`` or ``deepspeed.initialize`` without
accelerate) names its backend: ``attach(model, backend="fsdp2")``. Each backend owns:

* the refusals (:meth:`Backend.check_per_example`, :meth:`Backend.check_engine_run`);
* full shapes and sizes (:meth:`Backend.numel`, and the layout's :class:`~adalora_scores.allocation.layout.
  ParameterAccess`, which reads full values and gradients and writes masks);
* following the parameters a wrapper replaced (:meth:`Backend.follow`);
* gathering and restoring full state for the adapter file and checkpoints (:meth:`Backend.trainable_state`,
  :meth:`Backend.training_state`, :meth:`Backend.load_training_state`);
* the gradient-finiteness check (:meth:`Backend.nonfinite_parameter`), which every process answers alike.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate.utils import DistributedType
from torch import nn

from adalora_scores.adapter.distributed import deepspeed as zero3
from adalora_scores.adapter.distributed import fsdp, full_state
from adalora_scores.adapter.distributed.sharding import check_full_gradients, current_distributed_type
from adalora_scores.allocation.layout import ParameterAccess, TripletLayout

__all__ = [
    "BACKENDS",
    "PER_EXAMPLE_UNDER_ZERO3",
    "Backend",
    "FullyShardedBackend",
    "SingleProcessBackend",
    "ZeroStage3Backend",
    "choose_backend",
    "resolve_backend",
]

PER_EXAMPLE_UNDER_ZERO3 = (
    "per-example gradients (a per-example score such as fisher_per_example, or task_gradient_only) are not "
    "supported under DeepSpeed ZeRO-3: their backward hooks read lora_A/lora_E/lora_B, which ZeRO-3 partitions "
    "and may have released by then, so the scores would be wrong. Use a mini-batch score (e.g. sensitivity) with "
    "task_gradient_only=False, or train without DeepSpeed (DDP or FSDP2)."
)


class Backend:
    """The interface, implemented for plain (unsharded) parameters; :class:`SingleProcessBackend` is this."""

    name = "single"

    # -- refusals --------------------------------------------------------------------------------------------------
    def check_per_example(self) -> None:
        """Raise if per-example gradient hooks cannot run under this backend."""

    def check_engine_run(self, resume: bool, checkpoint_every: int | None, nonfinite: str) -> None:
        """Raise a ValueError naming every engine feature this backend does not support (before any work)."""

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
        return _first_nonfinite(named)


class SingleProcessBackend(Backend):
    """One process, or DDP: every process holds the full parameters and the full, all-reduced gradient."""

    def __init__(self) -> None:
        self._checked = False  # whether follow() has looked for an unannounced wrapper

    def follow(self, layout: TripletLayout, model: nn.Module | None) -> bool:
        """Plain parameters are never replaced; the first call checks that no wrapper sharded or partitioned them
        behind accelerate's back (a hand-written loop around ``fully_shard`` or ``deepspeed.initialize``)."""
        if model is not None and not self._checked:
            self._checked = True
            wrapper = _unannounced_wrapper(model)
            if wrapper is not None:
                raise RuntimeError(
                    f"the model's adapter parameters are {wrapper}, but the allocator was attached for a single "
                    f"process or DDP, so it would read stale or empty tensors. Attach with "
                    f"backend={'fsdp2' if wrapper.startswith('FSDP2') else 'zero3'!r} (adalora_scores.attach), or "
                    "let accelerate wrap the model (accelerate launch with an FSDP2 or ZeRO-3 config)."
                )
        return False


class FullyShardedBackend(Backend):
    """FSDP2: parameters and gradients are ``DTensor`` shards, and ``fully_shard`` replaces the parameters after the
    allocator was attached (:mod:`.fsdp`)."""

    name = "fsdp2"

    def parameter_access(self) -> ParameterAccess:
        return fsdp.ShardedAccess()

    def follow(self, layout: TripletLayout, model: nn.Module | None) -> bool:
        return model is not None and fsdp.refresh_layout(layout, model)

    def prepare_adalora(self, adalora: nn.Module) -> None:
        fsdp.install_sharded_regulariser(adalora)

    def nonfinite_parameter(self, model: nn.Module) -> str | None:
        """Each process checks its own rows of every gradient; a MAX all-reduce of the verdict makes every process
        stop or skip together (a shard's NaN is on one process only)."""
        named = [
            (n, p.grad.to_local() if fsdp.is_sharded(p.grad) else p.grad)
            for n, p in model.named_parameters()
            if p.requires_grad and p.grad is not None
        ]
        bad = _first_nonfinite(named)
        if not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return bad
        device = named[0][1].device if named else torch.device("cpu")
        flag = torch.tensor([0 if bad is None else 1], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if bad is None and flag.item():
            return "a parameter shard held by another process"
        return bad


class ZeroStage3Backend(Backend):
    """DeepSpeed ZeRO-3: a partitioned parameter is an empty tensor with ``p.grad`` None; values and gradients live
    in DeepSpeed's optimizer (:mod:`.deepspeed`)."""

    name = "zero3"

    def check_per_example(self) -> None:
        raise RuntimeError(PER_EXAMPLE_UNDER_ZERO3)

    def check_engine_run(self, resume: bool, checkpoint_every: int | None, nonfinite: str) -> None:
        """Checkpoints and ``--resume`` (a checkpoint holds the optimizer's full state through torch's state-dict
        API, which does not read DeepSpeed's partitioned optimizer), and ``nonfinite=skip`` (accelerate's
        ``backward`` has already run ``engine.step()`` when the guard sees the loss, so the step cannot be
        skipped)."""
        fixes = []
        if resume:
            fixes.append("--resume: start the run again without it")
        if checkpoint_every != 0:
            fixes.append(f"checkpoints (checkpoint_every={checkpoint_every}): set checkpoint_every=0")
        if nonfinite == "skip":
            fixes.append("nonfinite=skip (DeepSpeed has stepped before the guard runs): set nonfinite=stop")
        if fixes:
            raise ValueError("under DeepSpeed the engine does not support " + "; ".join(fixes) + ".")

    def parameter_access(self) -> ParameterAccess:
        return zero3.DeepSpeedAccess()

    def numel(self, parameter: nn.Parameter) -> int:
        return zero3.full_numel(parameter)

    def trainable_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return zero3.zero3_trainable_state(model)

    def training_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        raise ValueError("checkpoints are not supported under DeepSpeed ZeRO-3: set checkpoint_every=0.")

    def load_training_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        raise ValueError("--resume is not supported under DeepSpeed ZeRO-3: start the run again without it.")

    def nonfinite_parameter(self, model: nn.Module) -> str | None:
        """The full gradients from DeepSpeed's optimizer (``p.grad`` is None under ZeRO-3): a collective, in
        parameter order on every process, so every process gets the same answer."""
        named = [(n, zero3.full_gradient(p)) for n, p in model.named_parameters() if p.requires_grad]
        return _first_nonfinite([(n, g) for n, g in named if g is not None])


BACKENDS: dict[str, type[Backend]] = {
    backend.name: backend for backend in (SingleProcessBackend, FullyShardedBackend, ZeroStage3Backend)
}
"""The backends by name, as ``attach(model, backend=...)`` takes them."""


def choose_backend(distributed_type: Any = None) -> Backend:
    """The backend for accelerate's ``distributed_type`` (None: read from accelerate's state in this process, which
    is None before any ``Accelerator``/``TrainingArguments``: a single process).

    Raises:
        RuntimeError: FSDP1 or DeepSpeed ZeRO stages 0 - 2, which leave no full gradient to read
            (:func:`~.sharding.check_full_gradients`).
    """
    if distributed_type is None:
        distributed_type = current_distributed_type()
    check_full_gradients(distributed_type)
    if distributed_type == DistributedType.DEEPSPEED:  # stage 3: the only stage check_full_gradients lets through
        return ZeroStage3Backend()
    if distributed_type == DistributedType.FSDP:  # version 2, likewise
        return FullyShardedBackend()
    return SingleProcessBackend()


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
            f"backend={backend!r}: unknown; choose one of {sorted(BACKENDS)}, or leave it None to "
            "take accelerate's set-up."
        )
    return BACKENDS[backend]()


def _first_nonfinite(named: list[tuple[str, torch.Tensor]]) -> str | None:
    if not named or torch.stack(torch._foreach_norm([g for _, g in named])).isfinite().all():
        return None
    return next(n for n, g in named if not torch.isfinite(g).all())


def _unannounced_wrapper(model: nn.Module) -> str | None:
    for parameter in model.parameters():
        if fsdp.is_sharded(parameter):
            return "FSDP2 shards (fully_shard)"
        if zero3.is_zero3_parameter(parameter):
            return "ZeRO-3 partitions (deepspeed.initialize)"
    return None
