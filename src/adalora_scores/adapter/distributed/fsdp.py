"""FSDP2 (``torch.distributed.fsdp.fully_shard``): the allocator and PEFT's regulariser on sharded adapters.

``fully_shard`` replaces every parameter of a wrapped module by a new ``nn.Parameter`` holding a ``DTensor``
(``Shard(0)``: each process keeps rows of it), and after backward ``p.grad`` is the matching ``DTensor`` shard of the
mean gradient over processes (reduce-scatter). Three things follow, each handled here:

* the layout's parameter references, taken when :func:`~adalora_scores.attach` ran, are stale:
  :func:`refresh_layout` finds the current parameters by the matrices' names at every allocator call, and
  rebinds the layout when they changed;
* the scores need each adapter's full gradient and value: :class:`ShardedAccess` reads a ``DTensor`` with
  ``full_tensor()`` (an all-gather; the adapter is small), so every process computes the same scores and masks, and
  writes the mask into each process's own rows of λ (``Replicate → Shard`` is a local slice, no communication);
* PEFT's orthogonal regulariser (``AdaLoraModel.forward``, peft 0.13 - 0.21) multiplies ``lora_A``/``lora_B``
  as they are registered after the model's forward pass; a module that reshards after forward
  (``reshard_after_forward=True``, FSDP2's default) leaves ``DTensor`` shards there, and PEFT fails
  (``torch.eye(..., out=empty_like(DTensor))``). :func:`install_sharded_regulariser` computes the same
  regulariser from the full tensors in that case. Its gradient reaches each process's shard unaveraged (every
  process computes the same value), and FSDP2 adds the reduce-scattered task gradient to it
  (``foreach_reduce`` accumulates into an existing ``sharded_param.grad``), so ``p.grad`` is the task gradient
  averaged over processes plus γ ∇R, as under DDP.

All of these are collectives: every process must make the same allocator calls, which the schedule guarantees.
"""

from __future__ import annotations

import types
import weakref
from typing import Any

import torch
from accelerate.utils import DistributedType
from torch import Tensor, nn

from adalora_scores.adapter.distributed.backend import BACKENDS, Backend, first_nonfinite
from adalora_scores.adapter.distributed.full_state import is_sharded
from adalora_scores.allocation.layout import AdaptedMatrix, ParameterAccess, TripletLayout

__all__ = [
    "FullyShardedBackend",
    "ShardedAccess",
    "check_savable",
    "install_sharded_regulariser",
    "orthogonal_regulariser",
    "refresh_layout",
]


def check_savable(model: nn.Module) -> None:
    """Raise a RuntimeError if ``model``'s adapter is FSDP2-sharded: PEFT's ``save_pretrained`` cannot write it."""
    if any(is_sharded(p) for n, p in model.named_parameters() if "lora_" in n):
        raise RuntimeError(
            "the adapter is sharded by FSDP2 (fully_shard), and PEFT's save_pretrained cannot write DTensor "
            "shards. Gather the full state on every process first (Backend.trainable_state(model) of "
            "adalora_scores.adapter.distributed, or torch.distributed.checkpoint.state_dict.get_model_state_dict "
            "with full_state_dict=True) and pass it: save(folder, model, state_dict=...)."
        )


class ShardedAccess(ParameterAccess):
    """Reads a ``DTensor`` as its full tensor (all-gather) and scales each process's own rows of λ."""

    def read(self, tensor: Tensor) -> Tensor:
        return tensor.full_tensor() if is_sharded(tensor) else tensor

    def scale_(self, values: list[Tensor], factors: list[Tensor]) -> None:
        from torch.distributed.tensor import DTensor, Replicate

        local_values, local_factors = [], []
        for value, factor in zip(values, factors, strict=True):
            if is_sharded(value):
                mesh = value.device_mesh
                replicated = DTensor.from_local(factor, mesh, [Replicate()] * mesh.ndim, run_check=False)
                factor = replicated.redistribute(mesh, value.placements).to_local()  # this process's rows
                value = value.to_local()  # under no_grad: the shard's own storage
            local_values.append(value)
            local_factors.append(factor)
        torch._foreach_mul_(local_values, local_factors)


def _owner_path(name: str) -> tuple[str, str]:
    """``...q_proj.lora_E.default`` → (``...q_proj``, ``'default'``)."""
    module_path, _, adapter = name.rpartition(".lora_E.")
    return module_path, adapter


_OWNERS: weakref.WeakKeyDictionary[nn.Module, list[tuple[dict[str, Any], ...]]] = weakref.WeakKeyDictionary()
"""Per model, the parameter tables (``_parameters`` of the ``lora_A``, ``lora_E``, ``lora_B`` ``ParameterDict``s)
of each layout matrix and its adapter name: ``fully_shard`` replaces parameters inside these tables, never the
modules, so the name look-up (through ``get_submodule`` and ``ParameterDict`` indexing, ten times the cost of the
table look-ups below) runs once per model."""


_CHECKED: weakref.WeakSet[TripletLayout] = weakref.WeakSet()
"""Layouts whose current parameters were checked for ``DTensor``s."""


def _owners(layout: TripletLayout, model: nn.Module) -> list[tuple[Any, ...]] | None:
    owners = _OWNERS.get(model)
    if owners is not None and len(owners) == len(layout.matrices):
        return owners
    owners = []
    for matrix in layout.matrices:
        module_path, adapter = _owner_path(matrix.name)
        try:
            module = model.get_submodule(module_path)
            tables = tuple(getattr(module, name)._parameters for name in ("lora_A", "lora_E", "lora_B"))
        except AttributeError:
            return None
        owners.append((*tables, adapter))
    _OWNERS[model] = owners
    return owners


def refresh_layout(layout: TripletLayout, model: nn.Module) -> bool:
    """Point ``layout`` at the parameters ``model`` holds now (found by the matrices' names, which are relative to
    the transformers model PEFT passes to its rank allocator; the modules are looked up once per model), and read
    them with :class:`ShardedAccess` once any is a ``DTensor``. Returns whether the layout was rebound; a ``model``
    that does not hold the layout's matrices (another module passed for PEFT's unused argument) leaves the layout as
    it is.

    Raises:
        ValueError: a matrix's shapes changed (see :meth:`TripletLayout.rebind`).
    """
    owners = _owners(layout, model)
    if owners is None:
        return False
    current = []
    changed = False
    for matrix, (rights, values, lefts, adapter) in zip(layout.matrices, owners, strict=True):
        try:
            right, value, left = rights[adapter], values[adapter], lefts[adapter]
        except KeyError:
            return False
        changed |= right is not matrix.right or value is not matrix.value or left is not matrix.left
        current.append((right, value, left))
    if changed:
        pairs = zip(layout.matrices, current, strict=True)
        layout.rebind([AdaptedMatrix(m.name, right=r, value=v, left=lf) for m, (r, v, lf) in pairs])
    if changed or layout not in _CHECKED:  # parameters only become DTensors by being replaced
        if not isinstance(layout.access, ShardedAccess) and any(is_sharded(p) for p in layout.parameters):
            layout.access = ShardedAccess()
        _CHECKED.add(layout)
    return changed


def orthogonal_regulariser(model: nn.Module, adapter_name: str) -> Tensor | float:
    """PEFT's orthogonal regulariser R on the full tensors (``AdaLoraModel.forward``, peft 0.13 - 0.21; AdaLoRA
    paper eq. 4): the mean over every ``lora_A`` (Q) and ``lora_B`` (P) of ``adapter_name`` of ‖QQᵀ − I‖_F, resp.
    ‖PᵀP − I‖_F, in PEFT's parameter order; a ``DTensor`` is gathered with ``full_tensor()`` (differentiable)."""
    total: Tensor | float = 0
    count = 0
    for name, parameter in model.named_parameters():
        if ("lora_A" in name or "lora_B" in name) and adapter_name in name:
            full = parameter.full_tensor() if is_sharded(parameter) else parameter
            covariance = full @ full.T if "lora_A" in name else full.T @ full
            identity = torch.eye(*covariance.size(), dtype=covariance.dtype, device=covariance.device)
            total = total + torch.norm(covariance - identity, p="fro")
            count += 1
    return total / count if count else 0


def _has_sharded_adapter(model: nn.Module, adapter_name: str) -> bool:
    return any(is_sharded(p) for n, p in model.named_parameters() if "lora_A" in n and adapter_name in n)


def install_sharded_regulariser(adalora: nn.Module) -> None:
    """Make ``adalora`` (PEFT's ``AdaLoraModel``) compute its orthogonal regulariser from full tensors whenever its
    adapter is FSDP2-sharded (module docstring); otherwise PEFT's own ``forward`` runs, unchanged. Idempotent."""
    if getattr(adalora, "_adalora_scores_sharded_forward", False):
        return
    peft_forward = type(adalora).forward

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        adapter = self.trainable_adapter_name
        if not _has_sharded_adapter(self.model, adapter):  # resting state of a sharded adapter: DTensor
            return peft_forward(self, *args, **kwargs)
        outputs = self.model.forward(*args, **kwargs)
        if isinstance(getattr(outputs, "loss", None), Tensor):
            weight = self.peft_config[adapter].orth_reg_weight
            if weight < 0:
                raise ValueError("orth_reg_weight should be greater than or equal to 0. ")
            outputs.loss += weight * orthogonal_regulariser(self.model, adapter)
        return outputs

    adalora.forward = types.MethodType(forward, adalora)
    adalora._adalora_scores_sharded_forward = True


class FullyShardedBackend(Backend):
    """FSDP2: parameters and gradients are ``DTensor`` shards, and ``fully_shard`` replaces the parameters after the
    allocator was attached (module docstring)."""

    name = "fsdp2"
    title = "FSDP2"

    @classmethod
    def handles(cls, distributed_type: Any) -> bool:
        return distributed_type == DistributedType.FSDP  # version 2: check_full_gradients refuses FSDP1

    def parameter_access(self) -> ParameterAccess:
        return ShardedAccess()

    def follow(self, layout: TripletLayout, model: nn.Module | None) -> bool:
        return model is not None and refresh_layout(layout, model)

    def prepare_adalora(self, adalora: nn.Module) -> None:
        install_sharded_regulariser(adalora)

    def nonfinite_parameter(self, model: nn.Module) -> str | None:
        """Each process checks its own rows of every gradient; a MAX all-reduce of the verdict makes every process
        stop or skip together (a shard's NaN is on one process only)."""
        grads = [(n, p.grad) for n, p in model.named_parameters() if p.requires_grad and p.grad is not None]
        named = [(n, g.to_local() if is_sharded(g) else g) for n, g in grads]
        bad = first_nonfinite(named)
        if not torch.distributed.is_available() or not torch.distributed.is_initialized():
            return bad
        device = named[0][1].device if named else torch.device("cpu")
        flag = torch.tensor([0 if bad is None else 1], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if bad is None and flag.item():
            return "a parameter shard held by another process"
        return bad


BACKENDS.register(FullyShardedBackend.name, FullyShardedBackend)
