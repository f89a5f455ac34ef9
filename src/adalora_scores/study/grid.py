"""Sweep specifications: a YAML grid of config values expanded into named runs, and deterministic sharding.

A sweep file::

    presets: {default: paper-glue, squad: paper-squad, squad_v2: paper-squad}   # train preset per task
    grid:                       # the product of these lists; any TrainConfig key
      task: [mrpc, rte]
      score: [sensitivity, fisher]
      seed: [1, 2, 3]
    set: {eval_batch_size: 64}  # values for every run
    data: ./glue                # a folder with one subfolder per task (./glue/mrpc, ...), or {task: folder}; none: Hub

Runs are named ``<task>__<score>__<other grid keys as key=value>__seed<k>``, in grid order.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adalora_scores.config import PRESET_DIR, TrainConfig, resolve_config

__all__ = ["Run", "SweepSpec", "load_sweep", "parse_shard", "shard"]

_KEYS = {"presets", "grid", "set", "data", "description"}


@dataclass(frozen=True)
class Run:
    name: str
    config: TrainConfig
    grid_values: dict[str, Any]
    """The values this run takes from the grid (task, score, seed and any other grid key)."""


@dataclass
class SweepSpec:
    grid: dict[str, list[Any]]
    presets: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    data: str | dict[str, str] | None = None
    source: str = "<dict>"

    def __post_init__(self) -> None:
        for key in ("task", "score", "seed"):
            if key not in self.grid:
                raise ValueError(f"{self.source}: the grid needs a {key!r} list (e.g. {key}: [...]).")
        for key, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{self.source}: grid.{key} must be a non-empty list, got {values!r}.")
            if len(set(map(repr, values))) != len(values):
                raise ValueError(f"{self.source}: grid.{key} repeats a value: {values}.")
        known = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted((set(self.grid) | set(self.fixed)) - known)
        if unknown:
            raise ValueError(f"{self.source}: unknown config key(s) {unknown}; use TrainConfig fields.")

    def preset_for(self, task: str) -> str | None:
        return self.presets.get(task, self.presets.get("default"))

    def data_for(self, task: str) -> str | None:
        if self.data is None:
            return None
        if isinstance(self.data, dict):
            return self.data.get(task)
        return str(Path(self.data) / task)

    def runs(self) -> list[Run]:
        """Every run of the grid, in grid order, each with its fully resolved config."""
        keys = list(self.grid)
        runs = []
        for combination in itertools.product(*(self.grid[k] for k in keys)):
            values = dict(zip(keys, combination, strict=True))
            task = values["task"]
            given = {"data": self.data_for(task), **self.fixed, **values}
            try:
                config = resolve_config(self.preset_for(task), task, given, [])
            except (ValueError, KeyError, FileNotFoundError) as error:
                message = error.args[0] if error.args else error
                raise type(error)(f"{self.source}, run {run_name(values)}: {message}") from None
            runs.append(Run(run_name(values), config, values))
        return runs


def _format(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return "".join(ch if ch.isalnum() or ch in ".-+_=," else "-" for ch in text)


def run_name(values: dict[str, Any]) -> str:
    others = [f"{key}={_format(value)}" for key, value in values.items() if key not in ("task", "score", "seed")]
    return "__".join([str(values["task"]), str(values["score"]), *others, f"seed{values['seed']}"])


def load_sweep(path: str | Path, seeds: list[int] | None = None) -> SweepSpec:
    """A sweep file by path or by preset name (``paper``, ``demo``); ``seeds`` replaces the grid's seed list."""
    file = Path(path)
    if not file.is_file() and (PRESET_DIR / f"{path}.yaml").is_file():
        file = PRESET_DIR / f"{path}.yaml"
    if not file.is_file():
        raise FileNotFoundError(f"no sweep file {path}; give a YAML path such as presets/paper.yaml.")
    document = yaml.safe_load(file.read_text()) or {}
    unknown = set(document) - _KEYS
    if unknown:
        raise ValueError(f"{file}: unknown section(s) {sorted(unknown)}; expected {sorted(_KEYS)}.")
    grid = dict(document.get("grid") or {})
    if seeds is not None:
        grid["seed"] = list(seeds)
    return SweepSpec(grid, dict(document.get("presets") or {}), dict(document.get("set") or {}),
                     document.get("data"), str(file))  # fmt: skip


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/8"`` → (2, 8), 1-based, with a clear error otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected i/n, e.g. 2/8.") from None
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text!r}: i must be between 1 and n.")
    return index, count


def shard(runs: list[Run], index: int, count: int) -> list[Run]:
    """Runs of shard ``index`` of ``count`` (1-based): every count-th run of the grid order, so shards partition
    the grid exactly and each gets a mix of tasks."""
    return runs[index - 1 :: count]
