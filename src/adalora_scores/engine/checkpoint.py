"""Checkpoints for exact resume: trainable weights, optimizer, scheduler, allocator, RNG and data position.

One file, ``checkpoint.pt``, written to a temporary file in the run folder, fsynced, then renamed over the previous
one: a kill during the write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adalora_scores.run_files import CHECKPOINT_FILE, atomic_save

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
        raise FileNotFoundError(f"{path} does not exist: the run stopped before its first checkpoint. Re-run it "
                                "with --overwrite (and checkpoint_every=N to checkpoint sooner).")  # fmt: skip
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path} is corrupt or not a checkpoint ({type(error).__name__}: {error}). Delete it and "
                         "re-run with --overwrite.") from None  # fmt: skip
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"{path} is not an adalora-scores checkpoint (format {FORMAT}); re-run with --overwrite.")
    return state
