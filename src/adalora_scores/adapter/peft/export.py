"""A trained AdaLoRA adapter as a standard PEFT LoRA adapter, at the ranks the allocator kept.

PEFT's AdaLoRA layer (``SVDLinear``, peft 0.13 - 0.21, ``peft/tuners/adalora/layer.py``) adds

    ΔW x = c · B (A ∘ E) x,     c = lora_alpha / (ranknum + 1e-5),

with A = ``lora_A`` (r × d_in), E = ``lora_E`` (λ, r × 1), B = ``lora_B`` (d_out × r) and ``ranknum`` the initial rank.
A PEFT LoRA layer adds (α' / r') · B' A' x, with r' and α' read per module from ``rank_pattern`` / ``alpha_pattern``
(keys matched as suffixes, ``peft.utils.other.get_pattern_key``), else the global ``r`` and ``lora_alpha``. Keeping the
triplets with λ ≠ 0 (the pruned ones add exactly zero),

    A' = (A ∘ E)[kept, :],     B' = B[:, kept] · f,     r' = |kept|,

gives the same update when (α' / r') · f = c. Servers read the scale differently, so the export comes in two forms:

* **one scale** (default; exact for PEFT and vLLM). One scale s (the most common c) for the whole adapter:
  ``lora_alpha`` = s · r for the global r (the most common kept rank), α' = s · r' in ``alpha_pattern`` for every
  module of another rank, and f = c / s (1 wherever c = s, so B' = B[:, kept] bit for bit). Every module's α'/r' is
  then s, which is also what vLLM applies to every module (``lora_alpha / r`` of the config,
  ``vllm/lora/peft_helper.py``).
* **scale folded into B** (``fold_scales``; exact for PEFT and llama.cpp). llama.cpp's ``convert_lora_to_gguf.py``
  reads only ``lora_alpha``, and ``llama_adapter_lora_weight::get_scale`` (``src/llama-adapter.h``) scales each tensor
  pair by ``lora_alpha / rank of that tensor``. So ``alpha_pattern`` stays empty, ``rank_pattern`` still gives each
  module's r' (PEFT builds its layers from it), and f = c · r' / ``lora_alpha``: PEFT's and llama.cpp's
  (``lora_alpha`` / r') · f are both c.

A ∘ E is the float32 product AdaLoRA's forward forms itself; f = 1 leaves B' untouched, and any other f is one float32
multiplication, so the exported update equals AdaLoRA's to float32 rounding. A module pruned to rank 0 is left out of
``target_modules`` (its update is zero). With a uniform rank R, A' gets zero rows and B' zero columns up to R: the
product is unchanged, every module has the global rank, and either form is an adapter that PEFT, vLLM and llama.cpp
all read exactly. ``fan_in_fan_out`` (GPT-2's ``Conv1D``) is copied: neither layer uses it in the forward
pass, both when merging. The heads PEFT saves (``modules_to_save``) are copied under the same keys.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel
from peft.tuners.adalora import AdaLoraConfig
from peft.tuners.adalora.layer import AdaLoraLayer
from peft.utils import get_peft_model_state_dict
from safetensors.torch import save_file

__all__ = ["LoraExport", "kept_ranks", "lora_export", "merged_model", "write_lora_export"]

WEIGHTS_FILE = "adapter_model.safetensors"


@dataclass
class LoraExport:
    """The exported adapter: its ``LoraConfig``, its weights (PEFT's saved keys) and each kept module's rank."""

    config: LoraConfig
    weights: dict[str, torch.Tensor]
    ranks: dict[str, int]
    """Every AdaLoRA module by name (relative to the transformers model), with its kept rank (0: left out)."""
    scales_folded: bool = False
    """True: each module's scale is folded into its ``lora_B`` (llama.cpp's form, module docstring)."""

    @property
    def largest_rank(self) -> int:
        """The largest rank of an exported ``lora_A`` (the uniform rank, if padded): what a server that sizes its
        buffers by one rank (vLLM's ``--max-lora-rank``) must hold."""
        return max(weight.shape[0] for key, weight in self.weights.items() if key.endswith(".lora_A.weight"))


def _kept_factors(layer: AdaLoraLayer, adapter: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """``(A', B', c)`` of one AdaLoRA layer: its kept triplets with λ folded into A', and its scale c."""
    right, value, left = (getattr(layer, name)[adapter].detach() for name in ("lora_A", "lora_E", "lora_B"))
    kept = value.view(-1) != 0
    coefficient = layer.scaling[adapter] / (layer.ranknum[adapter].detach() + 1e-5)  # in SVDLinear.forward's dtype
    return (right * value)[kept].contiguous(), left[:, kept].contiguous(), float(coefficient.item())


def kept_ranks(model: PeftModel, adapter: str = "default") -> dict[str, int]:
    """Every AdaLoRA module of ``model`` by name (relative to the transformers model), with its number of triplets
    with λ ≠ 0: the ranks :func:`lora_export` keeps, read without forming the factors."""
    return {
        name: int((module.lora_E[adapter] != 0).sum())
        for name, module in model.base_model.model.named_modules()
        if isinstance(module, AdaLoraLayer) and adapter in module.lora_E
    }


def lora_export(
    model: PeftModel, uniform_rank: int | None = None, adapter: str = "default", fold_scales: bool = False
) -> LoraExport:
    """The LoRA adapter equal to ``model``'s AdaLoRA adapter (module docstring).

    Args:
        model: a PEFT AdaLoRA model, e.g. loaded with ``PeftModel.from_pretrained`` (its layers resized to the saved
            rank pattern) or still in training.
        uniform_rank: one rank R for every module (zero-padded); None keeps each module's own rank.
        adapter: the AdaLoRA adapter to export.
        fold_scales: fold each module's scale into its ``lora_B`` and leave ``alpha_pattern`` empty, so that one
            ``lora_alpha`` over each tensor's own rank gives it (llama.cpp); False: one scale ``lora_alpha / r`` for
            every module (vLLM).

    Raises:
        TypeError: ``model`` holds no AdaLoRA adapter ``adapter``.
        ValueError: every matrix was pruned to rank 0, or ``uniform_rank`` is below the largest kept rank.
    """
    source = model.peft_config.get(adapter)
    if not isinstance(source, AdaLoraConfig):
        raise TypeError(f"the model has no AdaLoRA adapter {adapter!r} (its PEFT config is {type(source).__name__}).")
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    ranks: dict[str, int] = {}
    scales: dict[str, float] = {}
    for name, module in model.base_model.model.named_modules():
        if isinstance(module, AdaLoraLayer) and adapter in module.lora_E:
            right, left, scales[name] = _kept_factors(module, adapter)
            ranks[name] = right.shape[0]
            if right.shape[0] > 0:
                factors[name] = (right, left)
    if not factors:
        raise ValueError(
            "every adapted matrix was pruned to rank 0: the adapter adds nothing, so there is no LoRA "
            "adapter to export. Use the base model as it is."
        )
    largest = max(right.shape[0] for right, _ in factors.values())
    if uniform_rank is not None:
        if uniform_rank < largest:
            raise ValueError(
                f"--uniform-rank {uniform_rank} is below the largest kept rank ({largest}); give at least {largest}."
            )
        factors = {name: _padded(right, left, uniform_rank) for name, (right, left) in factors.items()}
    own = {name: right.shape[0] for name, (right, _) in factors.items()}
    default = uniform_rank or Counter(own.values()).most_common(1)[0][0]
    scale = Counter(scales[name] for name, rank in own.items() if rank == default).most_common(1)[0][0]
    default_alpha = scale * default
    weights = {}
    for name, (right, left) in factors.items():
        factor = scales[name] * own[name] / default_alpha if fold_scales else scales[name] / scale
        weights[f"base_model.model.{name}.lora_A.weight"] = right
        weights[f"base_model.model.{name}.lora_B.weight"] = left if factor == 1.0 else left * factor
    config = LoraConfig(
        r=default,
        lora_alpha=default_alpha,
        target_modules=sorted(factors),
        rank_pattern={name: rank for name, rank in own.items() if rank != default},
        alpha_pattern={} if fold_scales else {name: scale * rank for name, rank in own.items() if rank != default},
        lora_dropout=source.lora_dropout,
        fan_in_fan_out=source.fan_in_fan_out,
        bias=source.bias,
        modules_to_save=source.modules_to_save,
        task_type=source.task_type,
        base_model_name_or_path=source.base_model_name_or_path,
        revision=source.revision,
        inference_mode=True,
    )
    saved = get_peft_model_state_dict(model, adapter_name=adapter)
    weights |= {key: value.detach() for key, value in saved.items() if ".lora_" not in key and "ranknum" not in key}
    weights = {key: value.cpu().contiguous() for key, value in weights.items()}
    return LoraExport(config, weights, ranks, fold_scales)


def _padded(right: torch.Tensor, left: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    extra = rank - right.shape[0]
    return (
        torch.cat([right, right.new_zeros(extra, right.shape[1])]),
        torch.cat([left, left.new_zeros(left.shape[0], extra)], dim=1),
    )


def write_lora_export(export: LoraExport, folder: str | Path) -> Path:
    """``adapter_config.json`` and ``adapter_model.safetensors`` in ``folder``: a PEFT LoRA adapter that
    ``PeftModel.from_pretrained`` (and vLLM, llama.cpp's converter) reads. Returns the weights file."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    export.config.save_pretrained(str(folder))
    config_file = folder / "adapter_config.json"  # PEFT writes sets as lists; the target order is kept sorted
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["target_modules"] = sorted(config["target_modules"])
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    weights = folder / WEIGHTS_FILE
    save_file(export.weights, str(weights), metadata={"format": "pt"})
    return weights


def merged_model(model: PeftModel) -> Any:
    """The transformers model with the adapter merged into its weights and the trained heads in place
    (``merge_and_unload``), for ``save_pretrained``.

    Raises:
        ValueError: a 4-bit base (merging requantizes its weights, so the merged model would not compute the
            trained function).
    """
    if getattr(model.base_model.model, "is_loaded_in_4bit", False):
        raise ValueError(
            "the base model is loaded in 4 bits: merging would requantize its weights, so the merged model would not "
            "compute what was trained. Merge into a full-precision copy of the base: export RUN --merge "
            "load_in_4bit=false (the result differs from the 4-bit model by the base's quantization error), or "
            "export the adapter without --merge and serve it on the 4-bit base."
        )
    return model.merge_and_unload()
