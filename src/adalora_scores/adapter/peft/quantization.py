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

The CPU repacking (bitsandbytes >= 0.48 on CPUs with AVX512-BF16). ``Linear4bit.forward`` repacks its weight once
into a layout for a bfloat16 kernel when the input is on the CPU, the layer is in eval mode and the input needs no
gradient (``bitsandbytes.functional._convert_weight_packed_for_cpu``). Two things in it are unsafe for a training
library, and :func:`guard_cpu_repacking` handles both with a forward pre-hook on every ``Linear4bit``:

* the repacking asserts that the output width is a multiple of :data:`REPACK_BLOCK`, and it needs the input width to
  be a multiple of the quantization block size (64 by default; else a reshape fails); such a layer is left on the
  plain path (its ``support_avx512bf16_for_cpu`` flag turned off), so evaluation works for every layer width;
* a repacked layer stays repacked, and every later CPU forward, training ones included, goes through the inference
  kernel. Before a forward that trains (training mode, or an input that needs a gradient) the hook puts the layer
  back exactly as it was: the 4-bit codes by bitsandbytes' inverse permutation (exact: it only reorders nibbles),
  the quantization statistics (absmax, double-quantization state, dtype) from the references kept when the layer
  was repacked. bitsandbytes' own inverse re-quantizes the absmax from its bfloat16 copy, which would move the
  frozen base weights a little at every evaluation; restoring the kept statistics does not.

So training never sees the repacked layout, and a run trains to the same numbers on every CPU; only evaluation on
an AVX512-BF16 CPU computes through the bfloat16 kernel (its inputs rounded to bfloat16, as bitsandbytes does).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

__all__ = [
    "OUTPUT_HEADS",
    "REPACK_BLOCK",
    "can_repack",
    "check_four_bit_layers",
    "four_bit_config",
    "guard_cpu_repacking",
    "is_four_bit",
]

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
                    "PEFT did not find bitsandbytes when it was imported. Reinstall bitsandbytes (pip install -e "
                    "'.[quantization]' in the adalora-scores checkout) and import it before peft."
                )
    quantized = [n for n, p in model.named_parameters() if p.requires_grad and type(p).__name__ == "Params4bit"]
    if quantized:
        raise RuntimeError(
            f"{quantized[0]} is trainable but quantized to 4 bits; name its module in modules_to_save before loading "
            "(the engine keeps modules_to_save unquantized) or leave it out of modules_to_save."
        )


REPACK_BLOCK = 32
"""The output-width block of bitsandbytes' CPU repacking (``block_n`` of ``_convert_weight_packed_for_cpu``)."""

_STATISTICS = ("absmax", "nested", "dtype", "offset", "state2")
"""The fields of a ``QuantState`` that the repacking replaces or deletes; the rest it leaves as they were."""


def can_repack(shape: tuple[int, ...], blocksize: int) -> bool:
    """Whether bitsandbytes' CPU repacking accepts a weight of ``shape`` = (out_features, in_features) quantized in
    blocks of ``blocksize``: it packs rows in blocks of :data:`REPACK_BLOCK` and lays the absmax out as
    (out_features, in_features / blocksize)."""
    return len(shape) == 2 and shape[0] % REPACK_BLOCK == 0 and shape[1] % blocksize == 0


def guard_cpu_repacking(model: nn.Module) -> int:
    """Install the repacking guard (module doc) on every bitsandbytes ``Linear4bit`` of ``model``; returns how many
    layers carry it. Idempotent; a model without 4-bit layers (or without bitsandbytes) is left alone."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return 0
    guarded = 0
    for module in model.modules():
        if isinstance(module, Linear4bit):
            if not hasattr(module, "_repacking_guard"):
                module._repacking_guard = module.register_forward_pre_hook(_repacking_guard)
            guarded += 1
    return guarded


def _repacking_guard(module: nn.Module, args: tuple[Any, ...]) -> None:
    """Forward pre-hook of a ``Linear4bit``: the two cases of the module doc, decided as ``Linear4bit.forward``
    decides whether to repack."""
    if not args or not isinstance(args[0], torch.Tensor):
        return
    inputs, weight = args[0], module.weight
    state = getattr(weight, "quant_state", None)
    if state is None or inputs.device.type != "cpu":
        return
    trains = module.training or inputs.requires_grad
    if getattr(state, "packing_format_for_cpu", False):
        if trains:
            _unpack(module, state)
    elif getattr(module, "support_avx512bf16_for_cpu", False) and not trains:
        if can_repack(tuple(state.shape), state.blocksize):
            module._unpacked_statistics = {name: getattr(state, name) for name in _STATISTICS if hasattr(state, name)}
        else:
            module.support_avx512bf16_for_cpu = False  # the plain path for this layer, on every later call


def _unpack(module: nn.Module, state: Any) -> None:
    """Put a repacked layer back as it was before its repacking: codes by the exact inverse permutation, the
    statistics from the references kept then (or, for a layer repacked before the guard, bitsandbytes' inverse)."""
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse

    kept = getattr(module, "_unpacked_statistics", None)
    if kept is None:  # repacked before the guard was installed: bitsandbytes' own inverse (re-quantizes absmax)
        module.weight.data, _ = _convert_weight_packed_for_cpu_inverse(module.weight.data, state)
        return
    state.original_nested = False  # the inverse would re-quantize the absmax; the kept one replaces it below
    module.weight.data, state = _convert_weight_packed_for_cpu_inverse(module.weight.data, state)
    for name in _STATISTICS:
        if name in kept:
            setattr(state, name, kept[name])
        elif hasattr(state, name):
            delattr(state, name)
    state.packing_format_for_cpu = False
    del module._unpacked_statistics
