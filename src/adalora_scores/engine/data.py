"""Dynamic padding and (optional) length-grouped batching for any task's encoded dataset."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

__all__ = ["EpochShuffleSampler", "LengthGroupedSampler", "make_loader"]


class EpochShuffleSampler(Sampler[int]):
    """A random order that is a pure function of (seed, epoch), so a resumed run sees the same batches."""

    def __init__(self, size: int, seed: int) -> None:
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.size

    def __iter__(self):
        yield from torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch)).tolist()


class LengthGroupedSampler(Sampler[int]):
    """Shuffle, cut into mega-batches of 50 batches, sort each by length (longest first): similar lengths share a
    batch, so dynamic padding pads little, while the order stays random across mega-batches. Seeded per epoch."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int) -> None:
        self.lengths, self.batch_size, self.seed, self.epoch = lengths, batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator).tolist()
        size = 50 * self.batch_size
        for start in range(0, len(order), size):
            yield from sorted(order[start : start + size], key=lambda i: -self.lengths[i])


def make_loader(
    dataset: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    group_by_length: bool = False,
) -> DataLoader:
    """Batches padded to their longest item (by ``dataset.collate`` where the dataset pads its own labels, e.g.
    ``causal_lm``; else by the tokenizer); ``dataset.lengths`` drives length grouping."""
    collate = getattr(dataset, "collate", None) or DataCollatorWithPadding(tokenizer)
    # A DataLoader draws a seed from its generator whenever an iterator is created; its own generator keeps that draw
    # off the global RNG, so dropout masks do not depend on how often the data was iterated (exact resume).
    generator = torch.Generator().manual_seed(seed)
    if shuffle and group_by_length:
        sampler = LengthGroupedSampler(dataset.lengths, batch_size, seed)
    elif shuffle:
        sampler = EpochShuffleSampler(len(dataset), seed)
    else:
        sampler = None
    return DataLoader(dataset, batch_size, sampler=sampler, collate_fn=collate, generator=generator)
