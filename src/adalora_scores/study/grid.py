"""Sweep specifications: a YAML grid of config values expanded into named runs, and deterministic sharding.

A sweep file::

    presets: {default: paper-glue, squad: paper-squad, squad_v2: paper-squad}   # train preset per task
    grid:                       # the product of these lists; any TrainConfig key
      task: [mrpc, rte]
      score: [sensitivity, fisher]
      seed: [1, 2, 3]
    set: {eval_batch_size: 64}  # values for every run
    plugins: [./my_score.py]    # .py files (relative to this file) or module names that register scores
    data: ./glue                # a folder with one subfolder per task (./glue/mrpc, ...), or {task: folder}; none: Hub
    launcher: {name: slurm, slurm_partition: gpu}   # how sweep places the runs (sweep --launcher wins)
    baselines:                  # extra rows over the same tasks, seeds and other grid values
      lora_r8: {method: lora, target_r: 8}
      svd_lora_r8: {method: svd_lora}           # AdaLoRA's P Λ Q at rank target_r, no allocation
      sensitivity_gamma0: {score: sensitivity, orth_reg_weight: 0.0}   # a score row with other fixed settings
      lora_r32: {method: lora, target_r: 32, learning_rate: [5.0e-5, 1.0e-4]}   # a list: this row's own grid

A baseline setting that is a list replaces that grid key's list for the baseline's row (a learning-rate grid per
method); the key must be in the grid. A single value for a grid key fixes that key for the baseline's row: the row
takes that one value instead of the grid's list, and its run names state it (``lora_r8: {lora_alpha: 64}`` with
``grid.lora_alpha: [16, 32]`` gives one run per seed, named ``...__lora_r8__lora_alpha=64__seed1``).

A ``ladder:`` section lists rows in order, each changing exactly one thing from the row it steps from (its
``from:``, default the row before); they run like baselines, and the report prices each step
(:mod:`adalora_scores.study.ladder`). With a ladder the grid needs no ``score`` list.

A grid value may also be a mapping from task to list, with an optional ``default``, for per-task grids::

      learning_rate: {default: [5.0e-4, 1.0e-3, 2.0e-3], squad: [2.0e-4, 5.0e-4, 1.0e-3]}

Runs are named ``<task>__<score or baseline>__<other grid keys as key=value>__seed<k>``, in grid order; the values
in a name are the values the run trains with, and two runs never share a name (an error says which clash).
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adalora_scores.config import SCALE_KEYS, TASK_OPTION_ALIASES, TrainConfig, canonical_values, with_scale_level
from adalora_scores.presets.files import find_preset, load_listed_plugins, read_preset
from adalora_scores.presets.overrides import resolve_config
from adalora_scores.study.ladder import FROM_KEY, Step, ladder_steps, step_changes, step_text

__all__ = ["Run", "SweepSpec", "load_sweep", "parse_shard", "shard"]


@dataclass(frozen=True)
class Run:
    name: str
    config: TrainConfig
    grid_values: dict[str, Any]
    """The values this run takes from the grid (task, score, seed and any other grid key)."""
    source: str = "<dict>"
    """The sweep file the run comes from (recorded in the run folder's ``grid.json``)."""


@dataclass
class SweepSpec:
    grid: dict[str, list[Any]]
    presets: dict[str, str] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    data: str | dict[str, str] | None = None
    source: str = "<dict>"
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)
    ladder: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Rows in order, each stepping from an earlier one (``from:``) by one change (:mod:`~.ladder`)."""
    launcher: dict[str, Any] = field(default_factory=dict)
    """The file's ``launcher:`` section: how ``sweep`` places the runs (:mod:`adalora_scores.study.launchers`)."""

    def __post_init__(self) -> None:
        if self.ladder:
            self.grid = {"score": [], **self.grid}
            self.steps: list[Step] = ladder_steps(self.ladder, f"{self.source} ladder")
            clash = sorted(set(self.ladder) & (set(self.baselines) | set(self.grid["score"])))
            if clash:
                raise ValueError(f"{self.source}: ladder row(s) {clash} are also scores or baselines; rename them.")
        else:
            self.steps = []
        self.step_changes: dict[str, str] = {}
        for key in ("task", "score", "seed"):
            if key not in self.grid:
                raise ValueError(f"{self.source}: the grid needs a {key!r} list (e.g. {key}: [...]).")
        for key, values in self.grid.items():
            per_task = (
                values.values() if isinstance(values, dict) and key not in ("task", "score", "seed") else [values]
            )
            for listed in per_task:
                if not isinstance(listed, list) or (not listed and not (key == "score" and self.ladder)):
                    raise ValueError(
                        f"{self.source}: grid.{key} must be a non-empty list (or task → list), got {values!r}."
                    )
                if len(set(map(repr, listed))) != len(listed):
                    raise ValueError(f"{self.source}: grid.{key} repeats a value: {listed}.")
        clash = sorted(set(self.baselines) & set(self.grid["score"]))
        if clash:
            raise ValueError(f"{self.source}: baseline name(s) {clash} are also scores; rename them (e.g. lora_r8).")
        self.grid = canonical_values(self.grid, f"{self.source} grid")
        self.fixed = canonical_values(self.fixed, f"{self.source} set")
        self.baselines = {
            name: canonical_values(values, f"{self.source} baselines.{name}")
            for name, values in self.baselines.items()
        }
        self.ladder = {
            name: canonical_values(values, f"{self.source} ladder.{name}") for name, values in self.ladder.items()
        }
        for name, settings in self.rows_settings().items():
            section = "ladder" if name in self.ladder else "baselines"
            for key, value in settings.items():
                if isinstance(value, list) and (key not in self.grid or key in ("task", "score", "seed") or not value):
                    raise ValueError(
                        f"{self.source}: {section}.{name}.{key} is a list, which replaces a grid list for this "
                        f"row; add a grid list for it (grid.{key}: [...]), or give one value."
                    )
        # old top-level names of task options stay as given (run names keep them); resolve_config moves them
        known = {f.name for f in dataclasses.fields(TrainConfig)} | set(TASK_OPTION_ALIASES)
        settings = {key for values in self.rows_settings().values() for key in values}
        unknown = sorted((set(self.grid) | set(self.fixed) | settings) - known)
        if unknown:
            raise ValueError(f"{self.source}: unknown config key(s) {unknown}; use TrainConfig fields.")

    def rows_settings(self) -> dict[str, dict[str, Any]]:
        """The settings of every row that is not a plain score: the baselines, then the ladder's rows (without
        their ``from:``)."""
        ladder = {name: {k: v for k, v in values.items() if k != FROM_KEY} for name, values in self.ladder.items()}
        return {**self.baselines, **ladder}

    def preset_for(self, task: str) -> str | None:
        return self.presets.get(task, self.presets.get("default"))

    def data_for(self, task: str) -> str | None:
        if self.data is None:
            return None
        if isinstance(self.data, dict):
            return self.data.get(task)
        return str(Path(self.data) / task)

    def _values(self, key: str, task: str) -> list[Any]:
        values = self.grid[key]
        if isinstance(values, dict) and key not in ("task", "score", "seed"):
            if task not in values and "default" not in values:
                raise ValueError(f"{self.source}: grid.{key} has no list for task {task!r} and no 'default'.")
            return values.get(task, values.get("default"))
        return values

    def _combinations(self):
        """(grid values, baseline settings) of every run, in grid order; baselines follow the scores."""
        keys = list(self.grid)
        rows = [(score, {}) for score in self.grid["score"]] + list(self.rows_settings().items())
        for task in self.grid["task"]:
            shared = {key: self._values(key, task) for key in keys if key not in ("task", "score")}
            for score, settings in rows:
                # a baseline's setting for a grid key replaces the key's list: its own list, or its one fixed value;
                # the update scale is one setting given two ways, so a row's α replaces the grid's c and back
                given = [key for key in SCALE_KEYS if key in settings]
                lists = {
                    key: (settings[key] if isinstance(settings[key], list) else [settings[key]])
                    if key in settings
                    else values
                    for key, values in shared.items()
                    if not (given and key in SCALE_KEYS and key not in given)
                }
                fixed = {key: value for key, value in settings.items() if not isinstance(value, list)}
                for combination in itertools.product(*lists.values()):
                    yield {"task": task, "score": score, **dict(zip(lists, combination, strict=True))}, fixed

    def runs(self) -> list[Run]:
        """Every run of the grid, in grid order, each with its fully resolved config, checked by its task; a clear
        error for a score or task that is not registered (with the nearest registered name), or when two runs would
        share a name (two grid values that format alike, e.g. ``a b`` and ``a-b``)."""
        from adalora_scores.scores import get_score_class  # the registries, loaded when runs are resolved
        from adalora_scores.tasks import check_run_config, get_task

        runs: list[Run] = []
        rows = self.rows_settings()
        for values, settings in self._combinations():
            task = values["task"]
            given = {"data": self.data_for(task)}
            for where, level in (("set", self.fixed), ("grid", values), (values["score"], settings)):
                given = {**with_scale_level(given, level, f"{self.source} {where}"), **level}
            if values["score"] in rows and "score" not in settings:  # the label names the row
                given.pop("score")
            try:
                config = resolve_config(self.preset_for(task), task, given, [])
                get_score_class(config.score)  # an unknown score or task fails here, with the nearest name
                get_task(config.task)
                check_run_config(config)  # the task checks its options and settings before any run starts
            except (ValueError, KeyError, FileNotFoundError) as error:
                message = error.args[0] if error.args else error
                raise type(error)(f"{self.source}, run {run_name(values)}: {message}") from None
            runs.append(Run(run_name(values), config, values, self.source))
        names: dict[str, Run] = {}
        for run in runs:
            if run.name in names:
                raise ValueError(
                    f"{self.source}: two runs would share the name {run.name} (grid values "
                    f"{names[run.name].grid_values} and {run.grid_values}); make the grid values "
                    "differ in letters or digits, not only in punctuation or spaces."
                )
            names[run.name] = run
        self._check_steps(runs)
        return runs

    def _check_steps(self, runs: list[Run]) -> None:
        """Each ladder step changes exactly one thing (grid keys aside, which every row tunes); an error names the
        step and what it changes otherwise. Records what each step changes in :attr:`step_changes` (row → text,
        from the first task that has both rows)."""
        first: dict[tuple[str, str], Run] = {}
        for run in runs:
            first.setdefault((run.grid_values["task"], run.grid_values["score"]), run)
        skip = [key for key in self.grid if key not in ("task", "score")]
        for step in self.steps:
            for task in self.grid["task"]:
                child, parent = first.get((task, step.row)), first.get((task, step.parent))
                if child is None or parent is None:
                    continue
                after = child.config.to_dict()
                changes = step_changes(parent.config.to_dict(), after, skip)
                self.step_changes.setdefault(step.row, step_text(changes, after))
                if len(changes) != 1:
                    raise ValueError(
                        f"{self.source}: ladder row {step.row} changes {step_text(changes)} from "
                        f"{step.parent} on {task}; a step changes exactly one thing, so add a row "
                        "between them or set the other values alike."
                    )


def _format(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
    return "".join(ch if ch.isalnum() or ch in ".-+_=," else "-" for ch in text)


def run_name(values: dict[str, Any]) -> str:
    others = [f"{key}={_format(value)}" for key, value in values.items() if key not in ("task", "score", "seed")]
    return "__".join([str(values["task"]), str(values["score"]), *others, f"seed{values['seed']}"])


def load_sweep(path: str | Path, seeds: list[int] | None = None) -> SweepSpec:
    """A sweep file by path or by bundled name (``paper``, ``paper-tuned``); ``seeds`` replaces the grid's seed
    list. A train preset is refused with a message naming ``train --config``."""
    file = find_preset(path, "sweep")
    document = read_preset(file, "sweep")
    load_listed_plugins(document, file)  # plugins: before the grid names their scores
    grid = dict(document.get("grid") or {})
    if seeds is not None:
        grid["seed"] = list(seeds)
    ladder = document.get("ladder") or {}
    if not isinstance(ladder, dict):
        raise ValueError(
            f"{file}: ladder must be a mapping of row name → settings, in order (e.g. lora_r8: "
            "{method: lora, target_r: 8})."
        )
    return SweepSpec(
        grid,
        dict(document.get("presets") or {}),
        dict(document.get("set") or {}),
        document.get("data"),
        str(file),
        dict(document.get("baselines") or {}),
        dict(ladder),
        launcher=dict(document.get("launcher") or {}),
    )


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
