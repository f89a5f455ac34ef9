"""Book-keeping of :class:`~.collector.PerExampleGradients`: adapted layers, micro-batches, and the groups of calls
whose gradients add up to one per-example gradient."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from peft.tuners.adalora.layer import AdaLoraLayer
from torch import Tensor, nn

from adalora_scores.adapter.per_example.svd_gradients import ExampleGradients
from adalora_scores.allocation.layout import TripletLayout

__all__ = ["AdaptedLayer", "CallGroup", "MicroBatch", "find_adapted_layers"]


@dataclass
class MicroBatch:
    """One forward/backward pass: the factor from hook gradients to g_n, and its number of examples."""

    loss_divisor: float
    loss_scale: float
    examples: int | None = None
    received: bool = False
    row_factors: Tensor | None = None
    """``loss_reduction="token_mean"``: T / T_n per row (0 for a row without labelled tokens)."""
    counted: int | None = None
    """``loss_reduction="token_mean"``: the rows with labelled tokens (the examples counted); None: every row."""


@dataclass
class AdaptedLayer:
    """One adapted SVDLinear and where its entries live in the flat layout."""

    name: str
    module: nn.Module
    adapter: str
    slices: tuple[slice, slice, slice]  # right (A), left (B), value (E)
    dropped_input: Tensor | None = None
    latest_group: Any = None  # weak reference to the CallGroup of the latest call on the examples' own rows


@dataclass
class CallGroup:
    """The calls of one layer in one micro-batch whose gradients add up to one per-example gradient."""

    layer: AdaptedLayer
    micro_batch: MicroBatch
    examples: int
    expected: int = 0
    received: int = 0
    buffer: ExampleGradients | None = None
    inputs: list[Tensor | None] = field(default_factory=list)


def find_adapted_layers(model: nn.Module, layout: TripletLayout) -> list[AdaptedLayer]:
    """The AdaLoRA layer of ``model`` behind every matrix of ``layout``, with its entries' place in the flat order."""
    owners: dict[int, tuple[str, nn.Module, str]] = {}
    for module_name, module in model.named_modules():
        if isinstance(module, AdaLoraLayer):
            for adapter, parameter in module.lora_A.items():
                owners[id(parameter)] = (module_name, module, adapter)
    layers = []
    for group in layout.groups:
        rank, d_out, d_in = group.rank, group.out_features, group.in_features
        for index, matrix in enumerate(group.matrices):
            if id(matrix.right) not in owners:
                raise ValueError(f"{matrix.name} is not an AdaLoRA layer of the model given to the collector.")
            module_name, module, adapter = owners[id(matrix.right)]
            if module.lora_E[adapter] is not matrix.value or module.lora_B[adapter] is not matrix.left:
                raise ValueError(f"{matrix.name}: the layout's λ and P are not those of {module_name}.")
            slices = (
                _piece(group.right, index, rank * d_in),
                _piece(group.left, index, d_out * rank),
                _piece(group.value, index, rank),
            )
            layers.append(AdaptedLayer(module_name, module, adapter, slices))
    return layers


def _piece(block: slice, index: int, size: int) -> slice:
    """The ``index``-th run of ``size`` entries inside a layout block."""
    start = block.start + index * size
    return slice(start, start + size)
