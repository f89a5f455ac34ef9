"""Greedy generation for evaluation, shared across processes: each process generates for its share of the prompts,
and every process receives all texts in prompt order."""

from __future__ import annotations

from typing import Any

import torch
from accelerate import Accelerator
from accelerate.utils import gather_object

from adalora_scores.engine.console import progress_bar

__all__ = ["generate_texts"]


@torch.no_grad()
def generate_texts(
    model: Any,
    prompts: list[list[int]],
    tokenizer: Any,
    accelerator: Accelerator,
    batch_size: int,
    max_new_tokens: int,
    progress: str | None = None,
) -> list[str]:
    """The greedy continuation of every prompt (token ids), decoded without special tokens.

    Prompts are padded on the left (a decoder continues from the last position) in batches of ``batch_size``;
    generation stops at EOS or after ``max_new_tokens`` tokens. ``model`` is the unwrapped PEFT model.
    ``progress``: the name of a progress bar over the batches (none without).
    """
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    mine: list[tuple[int, str]] = []
    with accelerator.split_between_processes(list(range(len(prompts)))) as indices:
        for start in progress_bar(range(0, len(indices), batch_size), progress, accelerator.is_local_main_process):
            chunk = indices[start : start + batch_size]
            width = max(len(prompts[i]) for i in chunk)
            ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in chunk])
            mask = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in chunk])
            device = accelerator.device
            inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
            stops = {"pad_token_id": pad, "eos_token_id": tokenizer.eos_token_id}
            generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False, **stops)
            texts = tokenizer.batch_decode(generated[:, width:], skip_special_tokens=True)
            mine.extend(zip(chunk, (text.strip() for text in texts), strict=True))
    model.train()
    everything = gather_object(mine) if accelerator.num_processes > 1 else mine
    return [text for _, text in sorted(everything)]
