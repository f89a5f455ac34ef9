"""Question + context → features: long contexts split into windows with a document stride, offsets kept.

Each example becomes one or more features ``[CLS] question [SEP] context-window [SEP]``; consecutive windows overlap
by ``stride`` tokens. Training labels are the token positions of the answer's first and last character; an
unanswerable question, or an answer not wholly inside the window, points both labels at the CLS token (as in the
original BERT/AdaLoRA SQuAD code).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset
from transformers import PreTrainedTokenizerBase

from adalora_scores.tasks.squad.data import QAExample

__all__ = ["QAFeatures"]

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class QAFeatures(Dataset):
    """Tokenised windows of ``examples``; ``lengths`` feed length grouping; eval metadata for answer extraction.

    Attributes per feature: ``feature_example`` (example index), ``offsets`` (character spans, (0, 0) outside the
    context), ``context`` (bool mask), ``cls_index``.
    """

    def __init__(
        self,
        examples: list[QAExample],
        tokenizer: PreTrainedTokenizerBase,
        max_length: int,
        stride: int,
        *,
        with_labels: bool,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError(
                f"{type(tokenizer).__name__} is a slow tokenizer; SQuAD needs offset mappings, which only fast "
                "(Rust) tokenizers give. Load the model folder with a tokenizer.json or install sentencepiece and "
                "protobuf so the slow tokenizer converts."
            )
        if stride >= max_length:
            raise ValueError(
                f"doc_stride {stride} must be smaller than max_seq_length {max_length}; e.g. 128 and 384."
            )
        self.examples = examples
        try:
            questions = [example.question.lstrip() for example in examples]
            contexts = [example.context for example in examples]
            windows = {"truncation": "only_second", "max_length": max_length, "stride": stride}
            encoded = tokenizer(
                questions, contexts, **windows, return_overflowing_tokens=True, return_offsets_mapping=True
            )
        except Exception as error:  # tokenizers raises a bare Exception when the question leaves no room
            raise ValueError(
                f"cannot split contexts into windows of {max_length} tokens with stride {stride} ({error}). "
                "A question is too long for the window: raise max_seq_length or lower doc_stride."
            ) from None
        inputs = [key for key in _MODEL_INPUTS if key in encoded]
        self.features: list[dict] = []
        self.feature_example: list[int] = []
        self.offsets: list[np.ndarray] = []
        self.context: list[np.ndarray] = []
        self.cls_index: list[int] = []
        for i, example_index in enumerate(encoded["overflow_to_sample_mapping"]):
            ids = encoded["input_ids"][i]
            sequence = np.array([s if s is not None else -1 for s in encoded.sequence_ids(i)])
            context = sequence == 1
            offsets = np.asarray(encoded["offset_mapping"][i], dtype=np.int64).reshape(-1, 2) * context[:, None]
            cls = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
            feature = {key: encoded[key][i] for key in inputs}
            if with_labels:
                start, end = self._label(examples[example_index], offsets, context, cls)
                feature |= {"start_positions": start, "end_positions": end}
            self.features.append(feature)
            self.feature_example.append(example_index)
            self.offsets.append(offsets)
            self.context.append(context)
            self.cls_index.append(cls)
        self.lengths = [len(f["input_ids"]) for f in self.features]

    @staticmethod
    def _label(example: QAExample, offsets: np.ndarray, context: np.ndarray, cls: int) -> tuple[int, int]:
        if not example.answers:
            return cls, cls
        start_char = example.answer_starts[0]
        end_char = start_char + len(example.answers[0])
        tokens = np.flatnonzero(context)
        starts, ends = offsets[tokens, 0], offsets[tokens, 1]
        if len(tokens) == 0 or starts[0] > start_char or ends[-1] < end_char:
            return cls, cls
        first = int(tokens[np.searchsorted(starts, start_char, side="right") - 1])  # last token starting ≤ start
        last = int(tokens[np.searchsorted(ends, end_char, side="left")])  # first token ending ≥ end
        return first, last

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict:
        return self.features[index]

    def metadata(self, width: int) -> dict[str, torch.Tensor]:
        """Context mask (F, width), offsets (F, width, 2), example index (F,) and CLS index (F,) as tensors."""
        count = len(self.features)
        mask = torch.zeros(count, width, dtype=torch.bool)
        offsets = torch.zeros(count, width, 2, dtype=torch.long)
        for i, (context, spans) in enumerate(zip(self.context, self.offsets, strict=True)):
            mask[i, : len(context)] = torch.from_numpy(context)
            offsets[i, : len(spans)] = torch.from_numpy(spans)
        feature_example = torch.tensor(self.feature_example, dtype=torch.long)
        cls_index = torch.tensor(self.cls_index, dtype=torch.long)
        return {"context_mask": mask, "offsets": offsets, "feature_example": feature_example, "cls_index": cls_index}
