"""``key=value`` overrides, typed by the field they set, and the resolution of a run's values: the defaults, a train
preset's levels, the command line's flags and the overrides, each over the ones before."""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Any

import yaml

from adalora_scores.config import (
    ALIASES,
    TASK_OPTION_ALIASES,
    TrainConfig,
    apply_level,
    canonical_values,
    with_scale_level,
)
from adalora_scores.presets.files import preset_levels

__all__ = ["parse_overrides", "resolve_config"]


def _convert(name: str, text: str) -> Any:
    """Parse an override value with YAML, then check it fits the field's annotation."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if text.strip().lower() in ("null", "none", "~") and type(None) in typing.get_args(hint):
        return None
    inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if type(None) in typing.get_args(hint) and len(inner) == 1:
        hint = inner[0]  # Optional[X]: check as X
    if hint is float:
        try:
            return float(text)  # YAML 1.1 reads "5e-3" as a string
        except ValueError:
            raise ValueError(f"{name}={text}: expected a number.") from None
    value = yaml.safe_load(text)
    if hint in (int, float) and isinstance(value, bool):
        raise ValueError(f"{name}={text}: expected a number.")
    if hint is float and isinstance(value, int):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        if hint is str:
            return str(text)
        raise ValueError(f"{name}={text}: expected {hint.__name__}, got {type(value).__name__}.")
    return value


def _option_value(text: str) -> Any:
    """A ``score_options.x`` / ``task_options.x`` value: YAML, except that a number YAML 1.1 leaves as text
    (``1e-5``) is a number."""
    value = yaml.safe_load(text)
    if isinstance(value, str) and re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", value.strip()):
        return float(value)
    return value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["learning_rate=1e-3", "score_options.beta=0.9", "task_options.text_column=review"]`` → typed values,
    checking every key exists (the names inside ``score_options``/``task_options`` are checked by the score and the
    task). An old top-level name of a task option (:data:`TASK_OPTION_ALIASES`, e.g. ``doc_stride=64``) is kept
    under that name, for :func:`resolve_config` to move."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair or pair.startswith("-"):
            raise ValueError(f"{pair!r} is not a key=value override (e.g. learning_rate=1e-3).")
        key, text = pair.split("=", 1)
        key = ALIASES.get(key, key)
        if key.startswith(("score_options.", "task_options.")):
            section, name = key.split(".", 1)
            values.setdefault(section, {})[name] = _option_value(text)
            continue
        if key in TASK_OPTION_ALIASES:
            values[key] = _option_value(text)
            continue
        if key not in fields:
            import difflib

            close = difflib.get_close_matches(key, [*fields, *ALIASES, *TASK_OPTION_ALIASES], n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown config key {key!r}.{hint}")
        values[key] = _convert(key, text)
    return values


def resolve_config(preset: str | None, task: str | None, cli: dict[str, Any], overrides: list[str]) -> TrainConfig:
    """Preset defaults < preset task entry < command-line flags < ``key=value`` overrides; the overrides'
    ``score_options`` and ``task_options`` merge name by name. The preset's entry is that of the run's task: a
    ``task=`` override, else ``task``, else the flags' ``task``, else the task of the preset's defaults. An old
    top-level name of a task option (:data:`TASK_OPTION_ALIASES`) is ``task_options.NAME`` of its level, set name
    by name over the levels below it (as the top-level field it was). ``update_scale`` and
    ``lora_alpha`` give one setting two ways: a level that gives one replaces the other from the levels below
    (:func:`with_scale_level`).

    The values are checked here, the task options are not: the task checks them where the config is resolved for a
    run (``adalora_scores.tasks.check_run_config`` on the command line and in sweeps, ``configure_run`` in
    ``train``), before any work."""
    given = canonical_values({k: v for k, v in cli.items() if v is not None}, "the given values")
    overridden = parse_overrides(overrides)
    levels = preset_levels(preset, overridden.get("task") or task or given.get("task")) if preset else []
    values: dict[str, Any] = {}
    for where, level in [*levels, ("the given values", given)]:
        values = apply_level(with_scale_level(values, level, where), level, where, merge_sections=False)
    where = "the key=value overrides"
    values = apply_level(with_scale_level(values, overridden, where), overridden, where, merge_sections=True)
    unknown = set(values) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown config key(s) {sorted(unknown)} in preset {preset}.")
    return TrainConfig(**values)
