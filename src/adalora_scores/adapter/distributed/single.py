"""One process, or DDP: the backend of every set-up that no other registered backend handles."""

from __future__ import annotations

from torch import nn

from adalora_scores.adapter.distributed.backend import BACKENDS, Backend
from adalora_scores.adapter.distributed.deepspeed import is_zero3_parameter
from adalora_scores.adapter.distributed.full_state import is_sharded
from adalora_scores.allocation.layout import TripletLayout

__all__ = ["SingleProcessBackend"]


class SingleProcessBackend(Backend):
    """Every process holds the full parameters and the full, all-reduced gradient."""

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


BACKENDS.register("single", SingleProcessBackend)


def _unannounced_wrapper(model: nn.Module) -> str | None:
    for parameter in model.parameters():
        if is_sharded(parameter):
            return "FSDP2 shards (fully_shard)"
        if is_zero3_parameter(parameter):
            return "ZeRO-3 partitions (deepspeed.initialize)"
    return None
