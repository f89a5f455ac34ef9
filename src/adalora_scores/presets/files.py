"""Train presets and sweep files: finding one by path or bundled name, reading and checking its sections, importing
the plugins it lists, the values of its ``defaults``/``tasks`` levels, and writing a config back as a train YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from adalora_scores.config import TrainConfig, canonical_values
from adalora_scores.plugins.loading import load_plugins

__all__ = [
    "SWEEP_PRESET_DIR",
    "TRAIN_PRESET_DIR",
    "find_preset",
    "load_listed_plugins",
    "load_preset",
    "preset_levels",
    "preset_output",
    "read_preset",
    "train_file_text",
]

PRESET_DIR = Path(__file__).parent
TRAIN_PRESET_DIR = PRESET_DIR / "train"
SWEEP_PRESET_DIR = PRESET_DIR / "sweep"


TRAIN_SECTIONS = {"kind", "description", "plugins", "output", "defaults", "tasks"}
"""The sections of a train YAML: ``defaults`` holds values of any :class:`TrainConfig` field (``task``, ``model``,
``data`` and ``score`` included), ``tasks`` one entry of values per task, ``output`` the run folder of
``adalora-scores train --config FILE`` (a sweep gives each run its own folder and ignores it)."""
SWEEP_SECTIONS = {
    "kind",
    "description",
    "plugins",
    "presets",
    "grid",
    "set",
    "data",
    "baselines",
    "ladder",
    "launcher",
}


def find_preset(path_or_name: str | Path, kind: str) -> Path:
    """A YAML file by path, or a bundled preset by name (``paper-glue`` for train presets, ``paper`` for sweeps)."""
    folder = TRAIN_PRESET_DIR if kind == "train" else SWEEP_PRESET_DIR
    path = Path(path_or_name)
    if path.is_file():
        return path
    for candidate in (folder / f"{path_or_name}.yaml", folder / path.name):
        if candidate.is_file():
            return candidate
    other = SWEEP_PRESET_DIR if kind == "train" else TRAIN_PRESET_DIR
    if (other / f"{path_or_name}.yaml").is_file() or (other / path.name).is_file():
        raise ValueError(_wrong_kind(str(path_or_name), kind))
    available = ", ".join(sorted(p.stem for p in folder.glob("*.yaml")))
    raise FileNotFoundError(f"no {kind} preset {str(path_or_name)!r}; give a YAML path or one of: {available}.")


def _wrong_kind(name: str, kind: str) -> str:
    if kind == "train":
        return (
            f"{name} is a sweep file (a grid of runs), not a train preset; run it with "
            f"`adalora-scores sweep {name} --output DIR`, or pass a train preset such as paper-glue."
        )
    return (
        f"{name} is a train preset (settings for one run), not a sweep file; use it with "
        f"`adalora-scores train --config {name} --task TASK --output DIR`, or name it in a sweep file's "
        "`presets:` section."
    )


def read_preset(path: Path, kind: str) -> dict[str, Any]:
    """The YAML document of a preset file, checked to be of ``kind`` ("train" or "sweep")."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid YAML ({error}).") from None
    if not isinstance(document, dict):
        raise ValueError(f"{path}: expected a YAML mapping with sections {sorted(TRAIN_SECTIONS | SWEEP_SECTIONS)}.")
    declared = document.get("kind")
    looks_like = "sweep" if {"grid", "baselines", "ladder"} & set(document) else "train"
    if declared not in (None, "train", "sweep"):
        raise ValueError(f"{path}: kind must be 'train' or 'sweep', got {declared!r}.")
    if (declared or looks_like) != kind:
        raise ValueError(_wrong_kind(str(path), kind))
    allowed = TRAIN_SECTIONS if kind == "train" else SWEEP_SECTIONS
    unknown = set(document) - allowed
    if unknown:
        raise ValueError(f"{path}: unknown section(s) {sorted(unknown)}; a {kind} preset has {sorted(allowed)}.")
    return document


def load_listed_plugins(document: dict[str, Any], path: Path) -> None:
    """Import the plugins a train preset or sweep file lists in its ``plugins:`` section (``.py`` paths relative to
    the file's folder, or module names; :func:`adalora_scores.plugins.loading.load_plugins`)."""
    listed = document.get("plugins") or []
    listed = [listed] if isinstance(listed, str) else listed
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise ValueError(
            f"{path}: plugins must be a list of .py file paths (relative to this file) or module names, "
            f"e.g. plugins: [./my_score.py], got {document.get('plugins')!r}."
        )
    if listed:
        load_plugins(listed, base=path.resolve().parent, where=f"{path} plugins:")


def preset_levels(path_or_name: str, task: str | None) -> list[tuple[str, dict[str, Any]]]:
    """``(where, values)`` of a train preset's ``defaults`` and of its ``tasks[task]`` entry (aliases renamed), in
    that order; ``task`` None: the task its ``defaults`` name, if any. The plugins of its ``plugins:`` section are
    imported first."""
    path = find_preset(path_or_name, "train")
    document = read_preset(path, "train")
    load_listed_plugins(document, path)
    defaults = canonical_values(dict(document.get("defaults") or {}), f"{path} defaults")
    levels = [(f"{path} defaults", defaults)]
    tasks = document.get("tasks") or {}
    task = task or defaults.get("task")
    if task and tasks:
        if task not in tasks:
            raise KeyError(f"preset {path} has no entry for task {task!r}; it covers {', '.join(tasks)}.")
        where = f"{path} tasks.{task}"
        levels.append((where, canonical_values(dict(tasks[task] or {}), where)))
        if "task" in levels[-1][1]:
            raise ValueError(
                f"{where} sets task; leave it out (the entry applies to task {task}), or set task: in defaults:."
            )
    if any("plugins" in values for _, values in levels):
        raise ValueError(
            f"{path}: plugins is a section of its own (next to defaults:), not a config value; move "
            "it to the top level of the preset."
        )
    return levels


def load_preset(path_or_name: str, task: str | None) -> dict[str, Any]:
    """Values from a YAML train preset: its ``defaults``, then its ``tasks[task]`` entry (aliases renamed). The
    plugins of its ``plugins:`` section are imported first."""
    values: dict[str, Any] = {}
    for _, level in preset_levels(path_or_name, task):
        values.update(level)
    return values


def preset_output(path_or_name: str) -> str | None:
    """The run folder a train YAML names in its ``output:`` section (a path relative to the current folder, as
    ``--output``), or None."""
    path = find_preset(path_or_name, "train")
    output = read_preset(path, "train").get("output")
    if output is not None and (not isinstance(output, str) or not output.strip()):
        raise ValueError(f"{path}: output must be the path of a run folder, e.g. output: runs/mrpc, got {output!r}.")
    return output


def train_file_text(config: TrainConfig, output: str | None = None, plugins: list[str] | tuple[str, ...] = ()) -> str:
    """``config`` as a train YAML that reproduces it: every value under ``defaults:``, and ``output:`` and
    ``plugins:`` (absolute paths or module names) where given; ``adalora-scores train --config FILE`` runs it."""
    document: dict[str, Any] = {"kind": "train"}
    if output is not None:
        document["output"] = str(output)
    if plugins:
        document["plugins"] = list(plugins)
    document["defaults"] = config.to_dict()
    header = "# The resolved configuration of one run; `adalora-scores train --config THIS_FILE` runs it.\n"
    return header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
