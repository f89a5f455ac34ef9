"""A 4-bit base model (QLoRA-style AdaLoRA): the ``from_pretrained`` quantization config, and the check that PEFT
wrapped the quantized layers in its 4-bit AdaLoRA layers.

What is quantized. Every ``nn.Linear`` of the base model becomes a bitsandbytes ``Linear4bit`` holding NF4 weights
with double quantization (QLoRA, Dettmers et al. 2023, §3; ``transformers.BitsAndBytesConfig``), except the task head
(``modules_to_save``: GLUE's classifier and pooler, SQuAD's qa_outputs; it is trained fully, so it cannot be
quantized) and the LM head (``lm_head``, which transformers also leaves unquantized by default). The 4-bit layers
compute in ``torch_dtype`` (float32 when it is unset); the layers left unquantized load in ``torch_dtype`` too.

PEFT's AdaLoRA wraps each ``Linear4bit`` in ``SVDLinear4bit`` (``peft/tuners/adalora/bnb.py``): the frozen 4-bit
product plus the same float32 SVD branch c · dropout(x) (A ∘ E)ᵀ Bᵀ as ``SVDLinear``. Everything this library reads
is in that branch (λ, P and Q; the layer's input after dropout and its output gradient for the per-example
scores), so scores, allocation, saving and the per-example hooks work unchanged on the 4-bit model.

No ``peft.prepare_model_for_kbit_training``. It (1) freezes every base parameter, which ``get_peft_model`` does
anyway; (2) upcasts every float16/bfloat16 parameter that is not 4-bit (norms, embeddings, the LM head) to float32,
which would make ``torch_dtype`` mean something else for a 4-bit model than for a full one; and (3) turns on
gradient checkpointing by default (with reentrant checkpointing, also the input embeddings' ``requires_grad``
hook). Here gradient checkpointing stays ``gradient_checkpointing``'s decision, and the engine uses non-reentrant
checkpointing, which needs no input hook. So a 4-bit run differs from a ``torch_dtype`` run only in the quantized
linear layers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["OUTPUT_HEADS", "check_four_bit_layers", "four_bit_config", "is_four_bit"]

OUTPUT_HEADS = ("lm_head",)
"""Left unquantized next to the task head: transformers' default skip list (the output embeddings) is replaced as
soon as a skip list is given."""


def four_bit_config(torch_dtype: str | None, keep: Iterable[str] = ()) -> Any:
    """``transformers.BitsAndBytesConfig`` for NF4 with double quantization, computing in ``torch_dtype`` (float32
    when None), leaving the modules named in ``keep`` (and :data:`OUTPUT_HEADS`) unquantized.

    ``keep`` holds ``modules_to_save``-style names, matched as the last parts of a module's name (``pooler`` keeps
    ``bert.pooler.dense``), as PEFT matches ``modules_to_save``.
    """
    from transformers import BitsAndBytesConfig

    names = sorted({*keep, *OUTPUT_HEADS})
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=getattr(torch, torch_dtype or "float32"),
        # transformers 5 matches each entry as a regex from the start of the module name up to a "." boundary (or
        # as a suffix); transformers 4 looks for "name." inside the module name: one form for each
        llm_int8_skip_modules=[*names, *(rf"(?:.*\.)?{re.escape(name)}" for name in names)],
    )


def is_four_bit(model: nn.Module) -> bool:
    """Whether ``model`` (a transformers model, or a PEFT model around one) was loaded in 4 bits."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "is_loaded_in_4bit", False))


def check_four_bit_layers(model: nn.Module) -> None:
    """Raise a RuntimeError if a 4-bit ``Linear4bit`` of ``model`` (a PEFT model) was adapted by a layer class that
    does not know it is quantized, or if a trainable parameter is quantized (it cannot be trained)."""
    import bitsandbytes as bnb
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in model.named_modules():
        if isinstance(module, BaseTunerLayer) and isinstance(module.get_base_layer(), bnb.nn.Linear4bit):
            if "4bit" not in type(module).__name__:
                raise RuntimeError(
                    f"{name} is a 4-bit layer adapted by PEFT's {type(module).__name__}, not its 4-bit layer class; "
                    "PEFT did not find bitsandbytes when it was imported. Reinstall bitsandbytes (pip install "
                    "'adalora-scores[quantization]') and import it before peft."
                )
    quantized = [n for n, p in model.named_parameters() if p.requires_grad and type(p).__name__ == "Params4bit"]
    if quantized:
        raise RuntimeError(
            f"{quantized[0]} is trainable but quantized to 4 bits; name its module in modules_to_save before loading "
            "(the engine keeps modules_to_save unquantized) or leave it out of modules_to_save."
        )
