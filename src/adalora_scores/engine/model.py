"""Loading the base model and its tokenizer for a run: a Hub name or a local folder, the task's head, the
config's dtype, 4-bit linear layers, gradient checkpointing."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoTokenizer

from adalora_scores.adapter.peft.quantization import four_bit_config, guard_cpu_repacking
from adalora_scores.config import TrainConfig
from adalora_scores.engine.pretrained_folder import check_model_folder
from adalora_scores.tasks import TaskBase

__all__ = ["enable_gradient_checkpointing", "load_model_and_tokenizer"]

_TRANSFORMERS = tuple(int(part) for part in transformers.__version__.split(".")[:2])


def _check_model_path(name: str) -> None:
    looks_local = name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1
    if looks_local and not Path(name).expanduser().is_dir():
        raise FileNotFoundError(f"--model {name}: no such folder. Give a local model folder or a Hub name.")


def load_model_and_tokenizer(config: TrainConfig, task: TaskBase):
    """Tokenizer and model with the task's head from a Hub name or local folder (DeBERTa-v3 needs sentencepiece),
    the model's weights in ``config.torch_dtype`` if set, its linear layers in 4 bits with ``config.load_in_4bit``
    (``adapter/peft/quantization.py``; the head, ``modules_to_save``, stays unquantized)."""
    _check_model_path(config.model)
    check_model_folder(config.model)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    options: dict[str, Any] = {}
    if config.torch_dtype is not None:  # transformers < 4.56 calls the keyword torch_dtype
        options["dtype" if _TRANSFORMERS >= (4, 56) else "torch_dtype"] = getattr(torch, config.torch_dtype)
    if config.load_in_4bit:
        head = config.modules_to_save if config.modules_to_save is not None else task.modules_to_save
        options["quantization_config"] = four_bit_config(config.torch_dtype, head)
    model = task.load_model(config.model, **_accepted(task, options))
    if config.load_in_4bit:  # evaluation on AVX512-BF16 CPUs: any layer width, and training afterwards
        guard_cpu_repacking(model)
    if config.torch_dtype is not None:
        # loaded in this dtype; a module the model class keeps in float32 (``_keep_in_fp32_modules``) and a task
        # without model options are cast here. Parameters only: buffers such as RoPE's float32 inv_freq keep their
        # dtype, as with from_pretrained(dtype=...). PEFT keeps the adapter in float32 (autocast_adapter_dtype); the
        # task head (modules_to_save) trains in this dtype. 4-bit weights (uint8) are not floating point: left alone.
        dtype = getattr(torch, config.torch_dtype)
        for parameter in model.parameters():
            if parameter.is_floating_point() and parameter.dtype != dtype:
                parameter.data = parameter.data.to(dtype)
    return model, tokenizer


def _accepted(task: TaskBase, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` if the task's ``load_model`` takes them (``**model_options``, as TaskBase.load_model says); a
    task written for ``load_model(name)`` loads at the checkpoint's dtype, then the cast applies ``torch_dtype``.
    Such a task cannot load in 4 bits: a TypeError says how to fix it."""
    parameters = inspect.signature(task.load_model).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters) or not options:
        return options
    if "quantization_config" in options:
        raise TypeError(
            f"task {task.name}: load_model(name) takes no model options, so load_in_4bit cannot reach "
            "from_pretrained. Give it **model_options and pass them on to from_pretrained (see "
            "adalora_scores.tasks.TaskBase.load_model), or set load_in_4bit=false."
        )
    return {}


def enable_gradient_checkpointing(model: Any) -> None:
    """Recompute activations in backward (non-reentrant, which works with frozen inputs and PEFT)."""
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns there
        model.activation_checkpointing_enable({"use_reentrant": False})
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
