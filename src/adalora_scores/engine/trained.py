"""A finished run, loaded back: its config (with the settings a later command may change), its task, and the base
model with the run's adapter loaded by stock PEFT. ``evaluate`` and ``export`` start here."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from adalora_scores.config import TrainConfig, parse_overrides
from adalora_scores.run_files import ADAPTER_FOLDER, METRICS_FILE, is_finished, read_config, saved_train_values

__all__ = ["finished_run_config", "load_trained_model"]


def finished_run_config(run: Path, overrides: list[str], allowed: tuple[str, ...], command: str) -> TrainConfig:
    """The finished run's config with ``overrides`` (``key=value``) applied; only the fields in ``allowed`` may
    change (the others shaped the trained adapter). ``task_options`` merge by name.

    Raises:
        FileNotFoundError: ``run`` is not a finished run.
        ValueError: an override of a field outside ``allowed``.
    """
    if not is_finished(run):
        raise FileNotFoundError(f"{run} is not a finished run (no {METRICS_FILE}); {command} needs its adapter.")
    saved = saved_train_values(read_config(run))
    changes = parse_overrides(overrides)
    refused = sorted(set(changes) - set(allowed))
    if refused:
        raise ValueError(f"{command} cannot change {', '.join(refused)}: they shaped the trained adapter. It may "
                         f"change {', '.join(allowed)}; train a new run for the others.")  # fmt: skip
    if "task_options" in changes:
        changes["task_options"] = {**(saved.get("task_options") or {}), **changes["task_options"]}
    return dataclasses.replace(TrainConfig(**saved), **changes)


def load_trained_model(run: Path, config: TrainConfig) -> tuple[Any, Any, Any]:
    """``(task, PEFT model in evaluation mode, tokenizer)``: the run's plugins imported again, the task of
    ``config``, its base model with the task's head, ``RUN/adapter`` loaded by stock PEFT (resized to its rank
    pattern) and the tokenizer saved with the adapter."""
    from transformers import AutoTokenizer

    from adalora_scores.adapter.peft.saving import load_adapter
    from adalora_scores.engine.model import load_model_and_tokenizer
    from adalora_scores.plugins import restore_plugins
    from adalora_scores.tasks import configure_run

    restore_plugins(run, config.score, config.task)  # the run's plugins (plugins.json), imported again
    task = configure_run(config)
    model, _ = load_model_and_tokenizer(config, task)
    tokenizer = AutoTokenizer.from_pretrained(run / ADAPTER_FOLDER)
    return task, load_adapter(model, run / ADAPTER_FOLDER), tokenizer
