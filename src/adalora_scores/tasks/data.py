"""The data types tasks share: labelled text examples, a task's splits, and text examples encoded for a model.

``Example`` and ``EncodedDataset`` serve every sequence-classification task (GLUE, ``classification``, the demo's
``contrast_sentiment``); ``TaskData`` is what ``Task.load`` returns for any task whose examples fit in lists.
``TextsToLabel`` and :func:`label_records` are those tasks' side of ``predict``: unlabelled texts in, a label and its
probabilities (or a regression value) out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

__all__ = ["EncodedDataset", "Example", "TaskData", "TextsToLabel", "label_records"]


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


class TextsToLabel(EncodedDataset):
    """Unlabelled texts for ``predict``: ``texts`` (a text, and the second of a pair or None) encoded as an
    :class:`EncodedDataset` with a placeholder label 0, which evaluation leaves out of the model's inputs;
    ``fields`` is each input row's columns, copied into its output record."""

    def __init__(
        self,
        texts: list[tuple[str, str | None]],
        fields: list[dict[str, Any]],
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
    ) -> None:
        super().__init__([Example(a, b, 0) for a, b in texts], tokenizer, max_length)
        self.fields = fields


def _label_value(name: str) -> str | int:
    """A label as written in the output: a whole number written plainly ("3", not "03") as the number, else text."""
    digits = name[1:] if name.startswith("-") else name
    return int(name) if digits.isdigit() and str(int(name)) == name else name


def label_records(fields: list[dict[str, Any]], logits: torch.Tensor, labels: tuple[str, ...]) -> list[dict]:
    """One output record per row: its ``fields``, then ``prediction``, the most probable of ``labels`` (class-id
    order), and ``probability_<label>`` for every label (the softmax of the logits); for regression (``labels``
    empty) ``prediction`` is the model's value. The prediction columns replace input columns of the same name."""
    if not labels:
        return [row | {"prediction": value} for row, value in zip(fields, logits.squeeze(-1).tolist(), strict=True)]
    probabilities = logits.float().softmax(-1)
    chosen = logits.argmax(-1).tolist()  # as evaluation chooses
    names = [f"probability_{label}" for label in labels]
    return [
        row | {"prediction": _label_value(labels[best])} | dict(zip(names, values, strict=True))
        for row, best, values in zip(fields, chosen, probabilities.tolist(), strict=True)
    ]
