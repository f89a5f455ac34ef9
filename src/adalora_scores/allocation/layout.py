"""Flat layout of all SVD triplets: one 1-D buffer for every adapter entry, grouped by matrix shape.

Scores run element-wise over one flat tensor, and triplet importance is a few ``view``/``mean`` calls per shape
group, so a step costs a handful of tensor operations whatever the number of adapted matrices.

Within a shape group of n matrices (rank r, d1 = out features, d2 = in features) the flat order is::

    [Q_1 … Q_n]  each (r, d2)    "right" singular vectors
    [P_1 … P_n]  each (d1, r)    "left" singular vectors
    [λ_1 … λ_n]  each (r, 1)     singular values

The adapter package says which parameters of its host library play these roles, and how to read and write them
(:class:`ParameterAccess`: plain tensors by default; the adapter's distributed backends read sharded or
partitioned parameters whole and write masks into each process's part), :meth:`TripletLayout.rebind` points the layout
at new parameter objects of the same matrices (a wrapper such as FSDP2 replaces a module's parameters), and
:meth:`TripletLayout.to`
moves its buffers to the parameters' device when the model moved after the layout was built (accelerate's
``prepare`` moves the model to the GPU after the allocator was attached on the CPU).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from adalora_scores.allocation.ranking import triplet_importance

__all__ = ["AdaptedMatrix", "ParameterAccess", "TripletLayout"]

ROLE_VALUE, ROLE_LEFT, ROLE_RIGHT = 0, 1, 2


@dataclass(frozen=True)
class AdaptedMatrix:
    """One adapted weight's update P Λ Q; ``name`` identifies it in rank patterns and logs."""

    name: str
    right: nn.Parameter  # Q, (r, d2)
    value: nn.Parameter  # λ, (r, 1)
    left: nn.Parameter  # P, (d1, r)


class ParameterAccess:
    """How the layout reads parameters and gradients and scales λ: plain tensors, as they are (the default).

    A subclass can read a tensor that is split across processes as the full tensor (identical on every process)
    and write the mask into each process's part.
    """

    def shape(self, tensor: Tensor) -> torch.Size:
        """The shape of the whole parameter (a subclass may know it when this process holds only a part)."""
        return tensor.shape

    def read(self, tensor: Tensor) -> Tensor:
        """``tensor`` (a parameter or its gradient, detached) as one full tensor of the parameter's shape."""
        return tensor

    def value(self, parameter: nn.Parameter) -> Tensor:
        """The parameter's full value (detached): :meth:`read` of the parameter."""
        return self.read(parameter.detach())

    def gradient(self, parameter: nn.Parameter) -> Tensor | None:
        """The parameter's full gradient of this step (detached), or None if it has none: :meth:`read` of
        ``p.grad``. A subclass may find it elsewhere (DeepSpeed keeps it in its optimizer, not in ``p.grad``)."""
        return None if parameter.grad is None else self.read(parameter.grad.detach())

    def scale_(self, values: list[Tensor], factors: list[Tensor]) -> None:
        """``values[i] *= factors[i]`` in place; ``factors[i]`` has the full shape (r, 1) of ``values[i]``."""
        torch._foreach_mul_(values, factors)


@dataclass
class _Group:
    matrices: list[AdaptedMatrix]
    rank: int
    out_features: int
    in_features: int
    right: slice = field(default_factory=lambda: slice(0))
    left: slice = field(default_factory=lambda: slice(0))
    value: slice = field(default_factory=lambda: slice(0))


class TripletLayout:
    """Maps the adapter parameters of many SVD-adapted matrices onto one flat buffer and back."""

    def __init__(self, matrices: list[AdaptedMatrix], access: ParameterAccess | None = None) -> None:
        self.access = access if access is not None else ParameterAccess()
        if not matrices:
            raise ValueError("no adapted matrices: the model has no AdaLoRA triplet (P, λ, Q) parameters.")
        groups: dict[tuple[int, int, int], _Group] = {}
        shape = self.access.shape
        self.shapes: dict[str, tuple[int, int, int]] = {}
        """``{matrix name: (rank, out features, in features)}``, the whole matrices' sizes."""
        for matrix in matrices:
            rank, in_features = shape(matrix.right)
            out_features, left_rank = shape(matrix.left)
            if shape(matrix.value) != (rank, 1) or left_rank != rank:
                raise ValueError(f"{matrix.name}: the shapes of Q, λ and P do not form rank-{rank} triplets.")
            key = (rank, out_features, in_features)
            self.shapes[matrix.name] = key
            groups.setdefault(key, _Group([], rank, out_features, in_features)).matrices.append(matrix)
        self.groups = list(groups.values())
        self.parameters: list[nn.Parameter] = []
        offset = 0
        for group in self.groups:
            for role in ("right", "left", "value"):
                tensors = [getattr(m, role) for m in group.matrices]
                size = sum(shape(t).numel() for t in tensors)
                setattr(group, role, slice(offset, offset + size))
                self.parameters.extend(tensors)
                offset += size
        self.numel = offset
        self.matrices = [m for g in self.groups for m in g.matrices]
        self.names = [m.name for m in self.matrices]
        self.ranks = [self.shapes[name][0] for name in self.names]
        """The rank of each matrix, in :attr:`matrices` order."""
        self.num_triplets = sum(self.ranks)
        self.device = self.parameters[0].device
        self._values = [m.value for m in self.matrices]
        self._buffer = torch.empty(self.numel, dtype=torch.float32, device=self.device)
        self._grad_buffer = torch.empty_like(self._buffer)

    @property
    def parameter_device(self) -> torch.device:
        """The device the adapter parameters are on now (it differs from :attr:`device` once the model moved)."""
        return self.parameters[0].device

    def to(self, device: torch.device | str) -> None:
        """Move the flat buffers to ``device`` (:attr:`device` follows); the parameters are not touched."""
        device = torch.device(device)
        if device != self.device:
            self._buffer = self._buffer.to(device)
            self._grad_buffer = self._grad_buffer.to(device)
            self.device = device

    def rebind(self, matrices: list[AdaptedMatrix]) -> None:
        """Point the layout at new parameter objects of the same matrices (same names and shapes), e.g. after a
        wrapper replaced the module's parameters; the flat order stays. The buffers stay where they are: if the new
        parameters are on another device, :meth:`to` moves them (the allocator does, with its own state).

        Raises:
            ValueError: ``matrices`` are not the layout's matrices (names or shapes differ).
        """
        by_name = {m.name: m for m in matrices}
        if sorted(by_name) != sorted(self.names) or len(by_name) != len(matrices):
            raise ValueError("rebind needs the same adapted matrices as the layout was built from (names differ).")
        new = [by_name[name] for name in self.names]
        for old, matrix in zip(self.matrices, new, strict=True):
            for role in ("right", "value", "left"):
                if self.access.shape(getattr(old, role)) != self.access.shape(getattr(matrix, role)):
                    raise ValueError(f"{matrix.name}: rebind got another shape for its {role} parameter.")
        for group in self.groups:
            group.matrices = [by_name[m.name] for m in group.matrices]
        self.matrices = new
        self.parameters = [
            getattr(m, role) for g in self.groups for role in ("right", "left", "value") for m in g.matrices
        ]
        self._values = [m.value for m in self.matrices]

    # -- gathering ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _gather(tensors: list[Tensor], out: Tensor) -> Tensor:
        flat = [t.reshape(-1) for t in tensors]
        if all(t.dtype == torch.float32 for t in flat):
            return torch.cat(flat, out=out)
        return out.copy_(torch.cat([t.float() for t in flat]))

    def gather_parameters(self) -> Tensor:
        """All adapter entries as one flat float32 tensor (a reused buffer: copy it to keep it)."""
        return self._gather([self.access.value(p) for p in self.parameters], self._buffer)

    def gather_gradients(self) -> Tensor:
        """All adapter gradients as one flat float32 tensor. Raises if a gradient is missing."""
        grads = []
        for parameter in self.parameters:
            grad = self.access.gradient(parameter)
            if grad is None:
                raise RuntimeError(
                    f"adapter parameter of {self._owner(parameter)} has no gradient. Call update_and_allocate(step) "
                    "after loss.backward() and optimizer.step(), and before optimizer.zero_grad()."
                )
            grads.append(grad)
        return self._gather(grads, self._grad_buffer)

    def _owner(self, parameter: Tensor) -> str:
        for matrix in self.matrices:
            if parameter is matrix.right or parameter is matrix.left or parameter is matrix.value:
                return matrix.name
        return "?"

    # -- triplets ----------------------------------------------------------------------------------------------------
    def triplet_scores(self, element_scores: Tensor) -> Tensor:
        """Triplet importance S for every triplet, in ``self.matrices`` order (flat, ``num_triplets`` long)."""
        per_group = []
        for g in self.groups:
            n = len(g.matrices)
            right = element_scores[g.right].view(n, g.rank, g.in_features)
            left = element_scores[g.left].view(n, g.out_features, g.rank)
            value = element_scores[g.value].view(n, g.rank)
            per_group.append(triplet_importance(value, left, right).reshape(-1))
        return torch.cat(per_group)

    def apply_keep_mask(self, keep: Tensor) -> None:
        """Zero λ of every triplet whose entry in ``keep`` (flat, ``num_triplets``, bool) is False."""
        factors = keep.to(dtype=self._values[0].dtype).view(-1, 1).split(self.ranks)
        with torch.no_grad():
            self.access.scale_(self._values, list(factors))

    def split_by_matrix(self, flat: Tensor) -> dict[str, Tensor]:
        """Split a per-triplet tensor into ``{matrix name: (r,) tensor}``."""
        return dict(zip(self.names, flat.split(self.ranks), strict=True))

    # -- helpers for scores ------------------------------------------------------------------------------------------
    def zeros(self) -> Tensor:
        return torch.zeros(self.numel, dtype=torch.float32, device=self.device)

    def block_means(self, flat: Tensor, out: Tensor | None = None) -> Tensor:
        """Each entry replaced by the mean of ``flat`` over its block (λ, P or Q of one shape group)."""
        out = torch.empty_like(flat) if out is None else out
        for g in self.groups:
            for block in (g.right, g.left, g.value):
                out[block].fill_(flat[block].mean())
        return out

    def roles(self) -> Tensor:
        """Per-entry role: 0 for λ, 1 for P, 2 for Q; int8, flat."""
        role = torch.empty(self.numel, dtype=torch.int8, device=self.device)
        for g in self.groups:
            role[g.right], role[g.left], role[g.value] = ROLE_RIGHT, ROLE_LEFT, ROLE_VALUE
        return role

    def value_entries(self) -> Tensor:
        """Flat bool mask of the λ entries."""
        return self.roles() == ROLE_VALUE
