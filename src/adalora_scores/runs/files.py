"""The run-folder schema: file names, reading and writing them, and when a saved config is "the same".

One module for the engine (which writes run folders) and the study (which reads them), so that a file name or the
meaning of "finished" is defined once. A run folder holds:

* ``config.yaml``: the resolved :class:`~adalora_scores.config.TrainConfig` plus derived values, with
  ``format_version`` (:data:`~adalora_scores.config.CONFIG_FORMAT`);
* ``log.jsonl``: one JSON record per optimizer step;
* ``rank_pattern.json``: the kept rank and mask of every adapted matrix;
* ``allocations.jsonl``: a header ``{"matrices": [[name, initial rank], ...]}``, then one record per allocation,
  ``{"step", "budget", "kept"}``, ``kept`` a string of ``0``/``1``, one per triplet, in the header's order;
* ``triplet_scores.json``: ``{"step", "scores": {matrix: [S_i, ...]}}``, the triplet scores of the final allocation;
* ``adapter/``: a standard PEFT adapter (and the tokenizer);
* ``checkpoint.pt``: the last checkpoint of an unfinished run;
* ``plugins.json``: the plugins loaded when the run started (:mod:`adalora_scores.plugins.loading`), imported again by
  ``train --resume`` and ``evaluate``; absent when there were none;
* ``error.txt``: the traceback of a run a sweep saw fail;
* ``grid.json``: written by a sweep before the run trains: ``{"row", "grid_values", "source"}``, the row (score or
  baseline name) and grid values the run was trained for, and the sweep file that asked for it;
* ``claim.json``: while a sweep worker trains the run, its claim (host, process id, start and heartbeat times;
  :mod:`adalora_scores.study.claims`); removed when the run finishes or fails;
* ``takeovers.jsonl``: one record per stale claim another worker took over (who held it, why it was stale, whether
  the run resumed from its checkpoint);
* ``metrics.json``: written last and atomically, so the run is finished exactly when it exists.

Every file is written with the permissions of an ordinary file under the process umask (``0o666 & ~umask``: 0644
under umask 022, 0664 under 002), so colleagues sharing a results folder can read it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import yaml

from adalora_scores.config import ALIASES, CONFIG_FORMAT, TASK_OPTION_ALIASES, TrainConfig, move_task_option_aliases
from adalora_scores.runs.atomic import atomic_save, atomic_write, current_umask, read_json, write_json

__all__ = [
    "ADAPTER_FOLDER",
    "ALLOCATIONS_FILE",
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "CLAIM_FILE",
    "ERROR_FILE",
    "GRID_FILE",
    "LOG_FILE",
    "METRICS_FILE",
    "PLUGINS_FILE",
    "RANK_PATTERN_FILE",
    "SWEEP_MANIFEST",
    "TAKEOVERS_FILE",
    "TRIPLET_SCORES_FILE",
    "atomic_save",
    "atomic_write",
    "config_changes",
    "current_umask",
    "is_finished",
    "read_config",
    "read_json",
    "read_allocations",
    "read_metrics",
    "read_rank_pattern",
    "read_triplet_scores",
    "split_kept",
    "saved_train_values",
    "write_config",
    "write_json",
]

CONFIG_FILE = "config.yaml"
LOG_FILE = "log.jsonl"
RANK_PATTERN_FILE = "rank_pattern.json"
ALLOCATIONS_FILE = "allocations.jsonl"
TRIPLET_SCORES_FILE = "triplet_scores.json"
ADAPTER_FOLDER = "adapter"
CHECKPOINT_FILE = "checkpoint.pt"
ERROR_FILE = "error.txt"
METRICS_FILE = "metrics.json"
PLUGINS_FILE = "plugins.json"
GRID_FILE = "grid.json"
CLAIM_FILE = "claim.json"
TAKEOVERS_FILE = "takeovers.jsonl"
SWEEP_MANIFEST = "sweep.yaml"
"""In a sweep's output folder: every run name of every sweep into it, and the specifications that wrote them."""


def write_config(folder: Path, resolved: dict[str, Any]) -> None:
    """``config.yaml``: the format version first, then the resolved values."""
    atomic_write(folder / CONFIG_FILE, yaml.safe_dump({"format_version": CONFIG_FORMAT, **resolved}, sort_keys=False))


def read_config(folder: Path) -> dict[str, Any]:
    """The saved ``config.yaml`` of a run folder; a clear error when it is missing, corrupt or from a newer version."""
    path = folder / CONFIG_FILE
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FileNotFoundError(f"{folder} holds no run ({CONFIG_FILE} is missing).") from None
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is corrupt ({type(error).__name__}); re-run the run with --overwrite.") from None
    if not isinstance(saved, dict):
        raise ValueError(f"{path} is corrupt (not a mapping); re-run the run with --overwrite.")
    version = saved.get("format_version", 1)
    if not isinstance(version, int) or version > CONFIG_FORMAT:
        raise ValueError(
            f"{path} has format version {version!r}, newer than this adalora-scores reads "
            f"({CONFIG_FORMAT}); upgrade adalora-scores."
        )
    return saved


def read_metrics(folder: Path) -> dict[str, Any]:
    return read_json(folder / METRICS_FILE)


def read_allocations(folder: Path) -> tuple[list[tuple[str, int]], list[dict[str, Any]]]:
    """``(matrices, allocations)`` of ``allocations.jsonl``: the (name, initial rank) header and every allocation
    record; ``([], [])`` when the run has none (LoRA, or a run folder older than 0.3)."""
    path = folder / ALLOCATIONS_FILE
    if not path.is_file():
        return [], []
    matrices: list[tuple[str, int]] = []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "matrices" in record:
            matrices = [(str(name), int(rank)) for name, rank in record["matrices"]]
        else:
            records.append(record)
    return matrices, records


def split_kept(matrices: list[tuple[str, int]], kept: str) -> dict[str, list[bool]]:
    """The ``kept`` string of an allocation record cut into one mask per matrix, in the header's order (each matrix
    takes its initial rank's worth of characters); a clear error when the lengths disagree."""
    total = sum(rank for _, rank in matrices)
    if len(kept) != total or set(kept) - {"0", "1"}:
        raise ValueError(
            f"an allocation's kept string has {len(kept)} characters (of 0/1), but the header's "
            f"matrices have {total} triplets; the {ALLOCATIONS_FILE} is corrupt."
        )
    masks, start = {}, 0
    for name, rank in matrices:
        masks[name] = [c == "1" for c in kept[start : start + rank]]
        start += rank
    return masks


def read_rank_pattern(folder: Path) -> dict[str, dict[str, Any]] | None:
    """``rank_pattern.json`` (matrix → ``{"rank", "mask"}``), or None when the folder has none."""
    path = folder / RANK_PATTERN_FILE
    return read_json(path) if path.is_file() else None


def read_triplet_scores(folder: Path) -> dict[str, list[float]] | None:
    """The ``scores`` of ``triplet_scores.json`` (matrix → triplet scores S_i at the final allocation), or None when
    the folder has none (LoRA, or a run folder older than 0.3)."""
    path = folder / TRIPLET_SCORES_FILE
    if not path.is_file():
        return None
    return {str(name): [float(v) for v in values] for name, values in read_json(path)["scores"].items()}


def is_finished(folder: Path) -> bool:
    """A run is finished exactly when its ``metrics.json`` exists (it is written last, atomically)."""
    return (folder / METRICS_FILE).is_file()


def saved_train_values(saved: dict[str, Any]) -> dict[str, Any]:
    """The :class:`TrainConfig` fields of a saved config of any format version, under today's names; fields the
    folder's version did not have take their defaults (so a new field at its default is not a change). SQuAD's
    options, top-level fields up to format 2, move into ``task_options`` where they differ from their defaults
    (:func:`~adalora_scores.config.move_task_option_aliases`)."""
    renamed = move_task_option_aliases({ALIASES.get(key, key): value for key, value in saved.items()})
    values = {}
    for field in dataclasses.fields(TrainConfig):
        if field.name in renamed:
            values[field.name] = renamed[field.name]
        elif field.default is not dataclasses.MISSING:
            values[field.name] = field.default
        else:
            values[field.name] = field.default_factory()  # type: ignore[misc]
    return values


def _comparable(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with the task options of :data:`~adalora_scores.config.TASK_OPTION_ALIASES` left out where they hold
    their defaults: given or not, they are the same run."""
    options = values.get("task_options")
    if not isinstance(options, dict):
        return values
    kept = {
        name: value
        for name, value in options.items()
        if name not in TASK_OPTION_ALIASES or value != TASK_OPTION_ALIASES[name]
    }
    return {**values, "task_options": kept}


def config_changes(saved: dict[str, Any], config: TrainConfig) -> list[tuple[str, Any, Any]]:
    """``(field, saved value, current value)`` for every field that differs once both are normalised; empty when
    the run folder was written with this config (by any format version). SQuAD's options at their defaults count as
    not given (``task_options: {doc_stride: 128}`` is the same run as ``task_options: {}``)."""
    before, after = _comparable(saved_train_values(saved)), _comparable(config.to_dict())
    return [(name, before[name], value) for name, value in after.items() if before[name] != value]
