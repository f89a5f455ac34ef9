"""Save an AdaLoRA adapter so that a matrix pruned to rank 0 loads in stock PEFT without a false alarm.

PEFT's ``save_pretrained`` writes a matrix whose ``rank_pattern`` row is all False as a ``(0, in)`` ``lora_A`` and an
``(out, 0)`` ``lora_B``. PEFT >= 0.21 then warns (``PeftWarning``, from ``_validate_lora_adapter_state_dict`` in
``peft/utils/save_and_load.py``) that zero-sized LoRA tensors mean "DeepSpeed ZeRO-3 / FSDP shards were not
gathered", which is not what happened: AdaLoRA pruned every triplet of that matrix.

:func:`save_adapter` saves such a matrix at rank 1 instead, keeping its first triplet with λ = 0. The update of a
triplet is B[:, i] · λ_i · A[i, :] (scaled), so with λ = 0 it adds exactly zero: stock PEFT's
``PeftModel.from_pretrained`` gives the same outputs as for the rank-0 save, bit for bit, with no warning. The
``rank_pattern`` in ``adapter_config.json`` shows that one kept entry; the run folder's ``rank_pattern.json`` keeps the
true ranks (0). The model in memory is left as it was.

With ``state_dict`` (the full trainable state gathered from FSDP2 shards, which PEFT cannot read from the model), the
λ = 0 of such a matrix is written into a copy of its tensor in that state dict, and PEFT saves the state dict.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from peft import AdaLoraConfig, PeftModel

__all__ = ["load_adapter", "save_adapter"]


def _zero_first_values(state_dict: dict[str, torch.Tensor], names: list[str]) -> dict[str, torch.Tensor]:
    """A shallow copy of ``state_dict`` in which λ[0] of every rank-pattern key in ``names`` is 0 (in a copy)."""
    out = dict(state_dict)
    for name in names:
        key = f"base_model.model.{name}"  # rank-pattern keys are relative to the PEFT model's transformers model
        if key not in out:
            raise KeyError(
                f"the state dict to save has no {key!r} (λ of a matrix pruned to rank 0); pass the full "
                "trainable state of this PEFT model, keyed like model.state_dict()."
            )
        value = out[key].clone()
        value[0] = 0
        out[key] = value
    return out


def _mask(row: Any) -> list[bool]:
    return [bool(v) for v in (row.view(-1).tolist() if isinstance(row, torch.Tensor) else row)]


def save_adapter(
    model: PeftModel,
    folder: str | Path,
    adapter_name: str = "default",
    state_dict: dict[str, torch.Tensor] | None = None,
    **kwargs: Any,
) -> list[str]:
    """``model.save_pretrained(folder, **kwargs)``, with every AdaLoRA matrix pruned to rank 0 saved at rank 1, λ = 0.

    Args:
        model: a ``PeftModel`` (AdaLoRA or any other PEFT method; only AdaLoRA rank patterns are touched).
        folder: where to write ``adapter_config.json`` and the weights.
        adapter_name: the adapter whose rank pattern is checked.
        state_dict: the weights to save instead of the model's own (PEFT's ``save_pretrained(state_dict=...)``),
            keyed like ``model.state_dict()``: e.g. the full state gathered from FSDP2 shards. Not modified.
        **kwargs: passed to ``save_pretrained``.

    Returns:
        The ``rank_pattern`` keys of the matrices that were pruned to rank 0 and saved at rank 1 with λ = 0.

    Raises:
        KeyError: ``state_dict`` lacks the λ of a matrix pruned to rank 0.
    """
    if state_dict is not None:
        kwargs["state_dict"] = state_dict
    config = model.peft_config[adapter_name]
    pattern = getattr(config, "rank_pattern", None) if isinstance(config, AdaLoraConfig) else None
    empty = [name for name, row in (pattern or {}).items() if not any(_mask(row))]
    if not empty:
        model.save_pretrained(folder, **kwargs)
        return []
    padded = {name: ([True] + _mask(row)[1:] if name in empty else row) for name, row in pattern.items()}
    if state_dict is not None:
        kwargs["state_dict"] = _zero_first_values(state_dict, empty)
        try:
            config.rank_pattern = padded
            model.save_pretrained(folder, **kwargs)
        finally:
            config.rank_pattern = pattern
        return empty
    values = []  # λ of the kept triplet, set to 0 for the save (masking already made it 0) and restored after
    for name in empty:
        module_path = name.removesuffix(f".{adapter_name}").removesuffix(".lora_E")
        values.append(model.base_model.model.get_submodule(module_path).lora_E[adapter_name])
    saved = [value[0].detach().clone() for value in values]
    try:
        with torch.no_grad():
            for value in values:
                value[0].zero_()
        config.rank_pattern = padded
        model.save_pretrained(folder, **kwargs)
    finally:
        config.rank_pattern = pattern  # PEFT rewrites it while saving; keep the caller's object
        with torch.no_grad():
            for value, old in zip(values, saved, strict=True):
                value[0].copy_(old)
    return empty


FALSE_RANK_PATTERN_ALARM = (
    r"The following rank_pattern keys did not match any targeted module and were ignored: "
    r"\['[^']+\.lora_E'(, '[^']+\.lora_E')*\]"
)
"""PEFT's check (``BaseTuner.inject_adapter``, huggingface/peft #3588) reads ``rank_pattern`` as LoRA's pattern of
module names. AdaLoRA keys it by the names of its ``lora_E`` parameters and resizes every layer from it on load
(``AdaLoraModel.resize_modules_by_rank_pattern``), so every AdaLoRA adapter, PEFT's own included, trips the check
although its ranks are applied. Matched only when every listed key is a ``lora_E`` name."""


def load_adapter(model: Any, folder: str | Path) -> Any:
    """``PeftModel.from_pretrained(model, folder)`` in evaluation mode: stock PEFT, resized to the saved
    ``rank_pattern``, without PEFT's false alarm about AdaLoRA's rank pattern (:data:`FALSE_RANK_PATTERN_ALARM`;
    that message from that module only)."""
    import warnings

    from peft import PeftModel

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", FALSE_RANK_PATTERN_ALARM, RuntimeWarning, r"peft\.tuners\.tuners_utils")
        return PeftModel.from_pretrained(model, str(folder)).eval()
