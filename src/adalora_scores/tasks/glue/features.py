"""GLUE examples → unpadded token ids (one or two segments) with their labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

if TYPE_CHECKING:
    from adalora_scores.tasks.glue.data import Example

__all__ = ["EncodedDataset"]


class EncodedDataset(Dataset):
    """Tokenised examples, unpadded; ``lengths`` feed length grouping; ``labels`` are the references in order."""

    def __init__(self, examples: list[Example], tokenizer: PreTrainedTokenizerBase, max_length: int) -> None:
        first = [e.text_a for e in examples]
        second = [e.text_b for e in examples] if examples and examples[0].text_b is not None else None
        encoded = tokenizer(first, second, truncation=True, max_length=max_length)
        self.labels = [example.label for example in examples]
        self.features = [
            {key: encoded[key][i] for key in encoded} | {"labels": self.labels[i]} for i in range(len(examples))
        ]
        self.lengths = [len(f["input_ids"]) for f in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]
