"""The data types tasks share: labelled text examples, a task's splits, and text examples encoded for a model.

``Example`` and ``EncodedDataset`` serve every sequence-classification task (GLUE, ``classification``, the demo's
``contrast_sentiment``); ``TaskData`` is what ``Task.load`` returns for any task whose examples fit in lists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

__all__ = ["EncodedDataset", "Example", "TaskData"]


@dataclass(frozen=True)
class Example:
    """One labelled text, or a pair of texts (``text_b``), with its class id (or regression target)."""

    text_a: str
    text_b: str | None
    label: float | int


@dataclass(frozen=True)
class TaskData:
    """A task's examples: ``train``, and the evaluation splits by name (``dev``, or MNLI's ``dev_matched`` and
    ``dev_mismatched``)."""

    train: list[Any]
    evals: dict[str, list[Any]]


class EncodedDataset(Dataset):
    """Tokenised examples, unpadded; ``lengths`` feed length grouping; ``labels`` are the references in order.

    ``examples`` are :class:`Example`; a pair is encoded as two segments when the first example has a ``text_b``.
    """

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
