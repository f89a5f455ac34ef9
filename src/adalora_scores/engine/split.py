"""The held-out selection split: a fixed, seeded fraction of the training data, never trained on."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import torch

__all__ = ["hold_out"]

T = TypeVar("T")


def hold_out(
    examples: Sequence[T], fraction: float, seed: int, group_key: str | None = None
) -> tuple[list[T], list[T]]:
    """``(kept, held_out)``: ceil(fraction × groups) groups, drawn by a permutation seeded with ``seed``, go to
    ``held_out``; both keep the original order. A group is one example, or all examples sharing the attribute
    ``group_key`` (SQuAD: the context, so no paragraph is seen in both). ``fraction`` 0 holds out nothing."""
    if fraction <= 0:
        return list(examples), []
    keys = [getattr(example, group_key) for example in examples] if group_key else range(len(examples))
    groups: dict[Any, int] = {}
    for key in keys:
        groups.setdefault(key, len(groups))
    count = math.ceil(fraction * len(groups))
    if count >= len(groups):
        raise ValueError(f"selection_fraction {fraction} would hold out all {len(groups)} training groups.")
    order = torch.randperm(len(groups), generator=torch.Generator().manual_seed(seed))
    chosen = set(order[:count].tolist())
    membership = [groups[key] in chosen for key in keys]
    kept = [e for e, held in zip(examples, membership, strict=True) if not held]
    held_out = [e for e, held in zip(examples, membership, strict=True) if held]
    return kept, held_out
