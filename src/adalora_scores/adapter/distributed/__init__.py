"""How the adapter's parameters are split across processes: one backend object per set-up (single process/DDP,
FSDP2, DeepSpeed ZeRO-3), chosen once. The only package that knows DeepSpeed and FSDP."""

from adalora_scores.adapter.distributed.backend import (
    BACKENDS,
    Backend,
    FullyShardedBackend,
    SingleProcessBackend,
    ZeroStage3Backend,
    choose_backend,
    resolve_backend,
)

__all__ = [
    "BACKENDS",
    "Backend",
    "FullyShardedBackend",
    "SingleProcessBackend",
    "ZeroStage3Backend",
    "choose_backend",
    "resolve_backend",
]
