"""How the adapter's parameters are split across processes: one backend object per set-up (single process/DDP,
FSDP2, DeepSpeed ZeRO-3), each registered from its own file, chosen once. The only package that knows DeepSpeed and
FSDP."""

from adalora_scores.adapter.distributed.backend import BACKENDS, Backend, choose_backend, resolve_backend
from adalora_scores.adapter.distributed.deepspeed import ZeroStage3Backend
from adalora_scores.adapter.distributed.fsdp import FullyShardedBackend
from adalora_scores.adapter.distributed.single import SingleProcessBackend

__all__ = [
    "BACKENDS",
    "Backend",
    "FullyShardedBackend",
    "SingleProcessBackend",
    "ZeroStage3Backend",
    "choose_backend",
    "resolve_backend",
]
