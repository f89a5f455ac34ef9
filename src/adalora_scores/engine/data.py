"""Tokenisation, dynamic padding and (optional) length-grouped batching."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from adalora_scores.tasks.glue import Example

__all__ = ["EncodedDataset", "LengthGroupedSampler", "make_loader"]


class EncodedDataset(Dataset):
    """Tokenised examples, unpadded; ``lengths`` feed length grouping."""

    def __init__(self, examples: list[Example], tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        first = [e.text_a for e in examples]
        second = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
        encoded = tokenizer(first, second, truncation=True, max_length=max_length)
        self.features = [
            {key: encoded[key][i] for key in encoded} | {"labels": examples[i].label} for i in range(len(examples))
        ]
        self.lengths = [len(f["input_ids"]) for f in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]


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
    dataset: EncodedDataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    group_by_length: bool = False,
) -> DataLoader:
    collate = DataCollatorWithPadding(tokenizer)
    if shuffle and group_by_length:
        return DataLoader(dataset, batch_size, sampler=LengthGroupedSampler(dataset.lengths, batch_size, seed),
                          collate_fn=collate)  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)
