"""A finished run folder, loaded again: its config with the few settings a later command may change, its task with
its plugins imported again, its tokenizer and its model with the trained adapter (stock PEFT). ``evaluate``,
``export`` and ``predict`` start here."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState

from adalora_scores.config import TrainConfig
from adalora_scores.presets.overrides import parse_overrides
from adalora_scores.runs.files import ADAPTER_FOLDER, METRICS_FILE, is_finished, read_config, saved_train_values

if TYPE_CHECKING:
    from adalora_scores.tasks import TaskBase

__all__ = ["EVALUATION_FIELDS", "load_run_model", "open_run", "run_tokenizer"]

EVALUATION_FIELDS = ("data", "eval_batch_size", "max_eval_samples", "torch_dtype", "mixed_precision", "task_options")
"""The config values ``evaluate`` may change: where the data is, how it is batched, and the task's options."""


def _evaluation_config(
    run: Path, overrides: list[str], command: str = "evaluate", fields: tuple[str, ...] = EVALUATION_FIELDS
) -> TrainConfig:
    saved = saved_train_values(read_config(run))
    changes = parse_overrides(overrides)
    refused = sorted(set(changes) - set(fields))
    if refused:
        raise ValueError(
            f"{command} cannot change {', '.join(refused)}. It may change {', '.join(fields)}; train a "
            "new run for the settings that shaped the trained adapter."
        )
    if "task_options" in changes:
        changes["task_options"] = {**(saved.get("task_options") or {}), **changes["task_options"]}
    return dataclasses.replace(TrainConfig(**saved), **changes)


def open_run(
    run: Path, overrides: list[str], command: str, fields: tuple[str, ...] = EVALUATION_FIELDS
) -> tuple[TrainConfig, TaskBase]:
    """The config of the finished run ``run`` with ``overrides`` (only of ``fields``), and its task, after its
    plugins (``plugins.json``) are imported again. ``command`` names the caller in errors."""
    from adalora_scores.runs.plugin_record import restore_plugins
    from adalora_scores.tasks import configure_run

    if not is_finished(run):
        raise FileNotFoundError(f"{run} is not a finished run (no {METRICS_FILE}); {command} needs its adapter.")
    config = _evaluation_config(run, overrides, command, fields)
    restore_plugins(run, config.score, config.task)
    return config, configure_run(config)


def run_tokenizer(run: Path) -> Any:
    """The tokenizer saved with the run's adapter (the one it trained with)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(run / ADAPTER_FOLDER)


def load_run_model(run: Path, config: TrainConfig, task: TaskBase) -> tuple[Accelerator, Any]:
    """A fresh accelerator, and the run's model on its device: the base model ``config.model`` with the task's head
    (``torch_dtype`` and ``load_in_4bit`` as configured) and the adapter ``RUN/adapter`` loaded by stock PEFT."""
    from adalora_scores.adapter.peft.saving import load_adapter
    from adalora_scores.engine.model import load_model_and_tokenizer

    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=config.mixed_precision, cpu=not torch.cuda.is_available())
    model, _ = load_model_and_tokenizer(config, task)
    return accelerator, accelerator.prepare(load_adapter(model, run / ADAPTER_FOLDER))
