"""Examples → token ids with the loss on the completion only, truncation with a count, and the padding collator.

Tokenisation. The prompt and the completion are tokenised separately and joined, so the boundary between them is
exact whatever the tokenizer merges across it:

* prompt/completion: ``prompt_ids = tokenizer(prompt)`` (with the tokenizer's own special tokens, e.g. LLaMA's BOS),
  ``completion_ids = tokenizer(completion, add_special_tokens=False) + [EOS]``;
* messages: the chat template renders the conversation without its last (assistant) message and with the
  generation prompt, which is the prompt; the full rendering must start with it, and the rest is the completion
  (the template's own end-of-turn tokens included). Both are tokenised without added special tokens, since a
  template writes its own.

Labels are the input ids with every prompt position set to -100 (``IGNORE_INDEX``, ignored by transformers' loss
and by the per-example statistics); padding positions are -100 too.

Truncation keeps the first ``max_seq_length`` tokens: the completion loses its end. An example with no completion
token left (the prompt fills the window) is an error, or is dropped with a warning (``truncated_completion``).
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch.utils.data import Dataset

from adalora_scores.tasks.causal_lm.records import LMExample

__all__ = ["IGNORE_INDEX", "CausalLMDataset", "PromptDataset", "completion_loss", "render_chat"]

IGNORE_INDEX = -100


def _chat_messages(example: LMExample, tokenizer: Any) -> list[dict[str, str]]:
    """The example's messages for ``apply_chat_template``; the tokenizer must have a chat template."""
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            f"{example.where}: chat messages need a chat template, and the tokenizer has none; pass "
            "task_options.chat_template=FILE.jinja, or use prompt/completion records."
        )
    return [{"role": role, "content": content} for role, content in example.messages or ()]


def _pad_id(tokenizer: Any) -> int:
    """The tokenizer's padding token; one without pads with EOS (LLaMA-style tokenizers; masked anyway)."""
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ValueError(
                "the tokenizer has neither a padding nor an end-of-sequence token; give it a pad "
                "token (tokenizer.pad_token = ...) and save it with the model."
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer.pad_token_id


def render_chat(example: LMExample, tokenizer: Any) -> tuple[str, str]:
    """``(prompt, completion)`` text of a conversation, rendered with the tokenizer's chat template."""
    messages = _chat_messages(example, tokenizer)
    prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages, tokenize=False)
    if not full.startswith(prompt):
        raise ValueError(
            f"{example.where}: the chat template does not render the conversation as the prompt "
            "followed by the answer (the rendering with add_generation_prompt=True is not a prefix of "
            "the full one); use a template that appends each message."
        )
    return prompt, full[len(prompt) :]


def _feature(ids: list[int], labels: list[int]) -> dict[str, list[int]]:
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


class CausalLMDataset(Dataset):
    """Tokenised examples, unpadded: ``input_ids``, ``attention_mask`` and ``labels`` (prompt masked).

    Attributes:
        examples: the kept examples, in order (dropped ones removed).
        prompts: each kept example's prompt ids, for generation.
        lengths: token counts, for length grouping.
        truncated: how many examples lost part of their completion; dropped: how many lost all of it.
    """

    def __init__(
        self,
        examples: list[LMExample],
        tokenizer: Any,
        max_length: int,
        on_truncated: str = "error",
        split: str = "train",
    ) -> None:
        self.pad_id = _pad_id(tokenizer)
        self.examples, self.prompts, self.features = [], [], []
        self.truncated = self.dropped = 0
        for example in examples:
            if example.messages is not None:
                prompt_text, completion_text = render_chat(example, tokenizer)
                prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
                completion_ids = tokenizer(completion_text, add_special_tokens=False)["input_ids"]
            else:
                prompt_ids = tokenizer(example.prompt)["input_ids"]
                completion_ids = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
                if tokenizer.eos_token_id is not None:
                    completion_ids = [*completion_ids, tokenizer.eos_token_id]
            if not completion_ids:
                raise ValueError(f"{example.where}: the completion has no tokens; fill it in or remove the record.")
            kept = max_length - len(prompt_ids)
            if kept <= 0:
                if on_truncated == "error":
                    raise ValueError(
                        f"{example.where}: the prompt alone has {len(prompt_ids)} tokens, so max_seq_length="
                        f"{max_length} cuts the whole completion away; raise max_seq_length, shorten the prompt, or "
                        "pass task_options.truncated_completion=drop to skip such examples."
                    )
                self.dropped += 1
                continue
            self.truncated += kept < len(completion_ids)
            ids = (prompt_ids + completion_ids)[:max_length]
            labels = [IGNORE_INDEX] * len(prompt_ids) + completion_ids[:kept]
            self.examples.append(example)
            self.prompts.append(prompt_ids)
            self.features.append(_feature(ids, labels))
        if self.dropped:
            warnings.warn(
                f"causal_lm {split}: dropped {self.dropped} of {len(examples)} examples whose completion "
                f"max_seq_length={max_length} cut away entirely.",
                stacklevel=2,
            )
        if not self.features:
            raise ValueError(
                f"causal_lm {split}: no example is left after truncation to max_seq_length={max_length}; "
                "raise max_seq_length."
            )
        self.lengths = [len(feature["input_ids"]) for feature in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.features[index]

    def collate(self, features: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        """Pad on the right to the longest item: ids with the pad token, the mask with 0, labels with -100."""
        width = max(len(feature["input_ids"]) for feature in features)
        fill = {"input_ids": self.pad_id, "attention_mask": 0, "labels": IGNORE_INDEX}
        return {
            key: torch.tensor([f[key] + [value] * (width - len(f[key])) for f in features])
            for key, value in fill.items()
        }


class PromptDataset(Dataset):
    """Prompts to generate from (``predict``): each example's prompt ids exactly as evaluation generates from them
    (:class:`CausalLMDataset`'s ``prompts``; a conversation's messages rendered with the generation prompt).

    Attributes:
        examples, fields: the examples, and each input record's fields (for the output), in input order.
        prompts: each example's whole prompt ids, for generation.
        features: the prompt ids cut to ``max_length``, every label -100 (no loss to take), padded by :meth:`collate`.
    """

    def __init__(
        self, examples: list[LMExample], tokenizer: Any, max_length: int, fields: list[dict[str, Any]]
    ) -> None:
        self.pad_id = _pad_id(tokenizer)
        self.examples, self.fields, self.prompts = examples, fields, []
        for example in examples:
            if example.messages is not None:
                messages = _chat_messages(example, tokenizer)
                text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
                self.prompts.append(tokenizer(text, add_special_tokens=False)["input_ids"])
            else:
                self.prompts.append(tokenizer(example.prompt)["input_ids"])
        cut = [ids[:max_length] for ids in self.prompts]
        self.features = [_feature(ids, [IGNORE_INDEX] * len(ids)) for ids in cut]
        self.lengths = [len(feature["input_ids"]) for feature in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.features[index]

    collate = CausalLMDataset.collate


def completion_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per example, ``[sum of the token losses, number of labelled tokens]`` (shape ``[B, 2]``): the next-token
    cross-entropy −log p(x_{t+1} | x_{≤t}) summed over the positions whose next label is not -100, as transformers'
    causal-LM loss shifts them."""
    shifted_logits, shifted_labels = logits[:, :-1].float(), labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(
        shifted_logits.transpose(1, 2), shifted_labels, ignore_index=IGNORE_INDEX, reduction="none"
    )
    return torch.stack([losses.sum(1), (shifted_labels != IGNORE_INDEX).sum(1).to(losses.dtype)], dim=1)
