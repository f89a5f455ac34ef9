"""Checkpoints for exact resume: trainable weights, optimizer, scheduler, allocator, RNG and data position.

One file, ``checkpoint.pt``, written to a temporary file in the run folder, fsynced, then renamed over the previous
one: a kill during the write leaves the previous checkpoint intact.

Loading is safe: ``torch.load(weights_only=True)`` rebuilds only tensors, containers and numbers, so a file that tries
to run code when unpickled is refused before anything runs. The one non-torch object a checkpoint holds is numpy's RNG
state, ``("MT19937", uint32 ndarray, pos, has_gauss, cached_gaussian)``; its four globals (numpy's ndarray
``_reconstruct``, ``ndarray``, ``dtype`` and the uint32 dtype class) are allow-listed for the duration of the load
only, under their numpy 2 and numpy 1 names, so checkpoints that hold the ndarray resume. (Storing the numpy state as
a plain list would need no allow-list, but would refuse those checkpoints.) Everything else
(the python ``random`` state tuple, torch/CUDA RNG byte tensors, weights, optimizer, scheduler and allocator state) is
plain data that ``weights_only`` accepts as it is.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adalora_scores.runs.files import CHECKPOINT_FILE, atomic_save

__all__ = ["CHECKPOINT", "Progress", "capture_rng", "load_checkpoint", "restore_rng", "save_checkpoint"]

CHECKPOINT = CHECKPOINT_FILE
FORMAT = 1


@dataclass
class Progress:
    """Where training stands: optimizer steps done, the epoch, micro-batches consumed in it, every loss so far."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    losses: list[float] = field(default_factory=list)
    skipped_steps: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def capture_rng() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically to ``folder / checkpoint.pt``."""
    path = folder / CHECKPOINT
    atomic_save(path, lambda stream: torch.save({"format": FORMAT, **state}, stream))
    return path


def load_checkpoint(folder: Path) -> dict[str, Any]:
    """The checkpoint of a run folder, with a clear error when it is missing or unreadable."""
    path = folder / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the run stopped before its first checkpoint. Re-run it "
            "with --overwrite (and checkpoint_every=N to checkpoint sooner)."
        )
    with torch.serialization.safe_globals(_numpy_rng_globals()):
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for truncated or foreign files
            reason = f"{type(error).__name__}: {error}"
            if isinstance(error, pickle.UnpicklingError):
                _refuse_if_unsafe(path)
                reason = "it could not be unpickled"
            message = f"{path} is corrupt or not a checkpoint ({reason}). Delete it and re-run with --overwrite."
            raise ValueError(message) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an adalora-scores checkpoint (format {FORMAT}); re-run with --overwrite.")
    return state


def _numpy_rng_globals() -> list:
    """What unpickling ``np.random.get_state()`` needs: numpy's ndarray reconstruction, ``ndarray``, ``dtype`` and the
    uint32 dtype's class (the key array is uint32; no other dtype is allowed). ``_reconstruct`` is named under both its
    numpy 2 and numpy 1 paths, so a checkpoint written under either numpy loads under the other."""
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1
        from numpy.core.multiarray import _reconstruct
    names = ("numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct")
    return [*((_reconstruct, name) for name in names), np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def _refuse_if_unsafe(path: Path) -> None:
    """Raise a clear error when ``path`` holds objects a checkpoint never holds (and that could run code)."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)  # reads opcodes, runs nothing
    except Exception:  # not a torch zip file at all: the caller reports it as corrupt
        return
    if unsafe:
        raise ValueError(
            f"{path} was not loaded: it holds Python objects that an adalora-scores checkpoint never contains "
            f"({', '.join(unsafe[:3])}), and unpickling them could run code. Nothing from it was run. If you did "
            "not write it, do not open it with torch.load(weights_only=False); delete it and re-run with --overwrite."
        )
