"""Read run folders and turn them into table cells: mean ± std over seeds, paper averages, paired tests.

Statistics (stated in the report):

* a cell is the mean over seeds with the sample standard deviation (ddof = 1) and the number of seeds n;
* "All Ave." (the study's convention) is the mean of the nine Table 1 column means; its ± is the std of the
  per-seed averages over the seeds present in every column;
* significance: a two-sided paired t-test over seeds (``scipy.stats.ttest_rel``) of each score against
  ``sensitivity`` with the same other grid values, per column, on the seeds both have; p-values are also given
  Holm-adjusted over all comparisons of a table (family-wise error 5%);
* direction: the mean difference is always ours − baseline; ``Comparison.higher_is_better`` says whether a positive
  difference is an improvement (False for a lower-is-better metric such as ``mse``;
  ``adalora_scores.metrics.direction``).

A run's row (score or baseline name) and grid values come from its own ``grid.json`` (written by the sweep before it
trained), else from the folder's ``sweep.yaml``, else from its config (task, score, seed). Two runs that claim one
cell (same row, grid values, task and seed) are conflicts: neither is counted, and the report lists them.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from scipy.stats import ttest_rel

from adalora_scores.metrics.direction import higher_is_better
from adalora_scores.runs.files import (
    ERROR_FILE,
    GRID_FILE,
    METRICS_FILE,
    SWEEP_MANIFEST,
    TAKEOVERS_FILE,
    is_finished,
    read_config,
    read_json,
)
from adalora_scores.study.paper import GLUE_AVERAGE_PARTS, Column

__all__ = [
    "Cell",
    "Comparison",
    "RunRecord",
    "Study",
    "collect",
    "generic_columns",
    "holm",
    "paired_test",
    "run_problems",
    "summarize",
]

BASELINE = "sensitivity"


@dataclass(frozen=True)
class RunRecord:
    name: str
    folder: Path
    task: str
    score: str
    seed: int
    variant: str
    """The run's other grid values, e.g. ``learning_rate=0.001`` ("" when there are none)."""
    metrics: dict[str, Any]
    grid_values: dict[str, Any] = field(default_factory=dict)
    method: str = "adalora"
    """``adalora`` (it has triplets: allocations, kept masks, triplet scores) or ``lora`` (a baseline without)."""

    @property
    def row(self) -> tuple[str, str]:
        return self.score, self.variant

    def value(self, split: str, metric: str) -> float | None:
        return self.metrics.get("eval", {}).get(split, {}).get(metric)


@dataclass(frozen=True)
class Cell:
    mean: float | None
    std: float | None
    n: int
    values: dict[int, float] = field(default_factory=dict)
    """seed → value."""


def summarize(values: dict[int, float]) -> Cell:
    if not values:
        return Cell(None, None, 0)
    numbers = list(values.values())
    std = statistics.stdev(numbers) if len(numbers) > 1 else None
    return Cell(statistics.fmean(numbers), std, len(numbers), dict(values))


@dataclass(frozen=True)
class Comparison:
    row: tuple[str, str]
    column: str
    n: int
    mean_difference: float | None
    t: float | None
    p: float | None
    p_holm: float | None = None
    higher_is_better: bool = True
    """Whether a positive ``mean_difference`` (ours − baseline) is an improvement for this column's metric."""


def paired_test(
    ours: dict[int, float], baseline: dict[int, float]
) -> tuple[int, float | None, float | None, float | None]:
    """(n, mean difference, t, p) of a two-sided paired t-test on the shared seeds; None where undefined (n < 2 or
    all differences equal).

    "Equal" allows float rounding: accuracies such as 57.0833… − 57.5 and 63.7499… − 64.1666… differ in the last
    bits, and scipy then returns t = ±inf and p = 0 (with a precision-loss warning), a false significance."""
    seeds = sorted(set(ours) & set(baseline))
    if not seeds:
        return 0, None, None, None
    a, b = [ours[s] for s in seeds], [baseline[s] for s in seeds]
    differences = [x - y for x, y in zip(a, b, strict=True)]
    difference = statistics.fmean(differences)
    spread = max(abs(d - difference) for d in differences)
    if len(seeds) < 2 or spread <= 1e-9 * max(1.0, abs(difference)):
        return len(seeds), difference, None, None
    result = ttest_rel(a, b)
    t, p = float(result.statistic), float(result.pvalue)
    return len(seeds), difference, (None if math.isnan(t) else t), (None if math.isnan(p) else p)


def holm(p_values: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values (None stays None and does not count)."""
    indexed = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for rank, (p, i) in enumerate(indexed):
        running = max(running, min(1.0, (len(indexed) - rank) * p))
        adjusted[i] = running
    return adjusted


@dataclass
class Study:
    records: list[RunRecord]
    expected: dict[str, dict[str, Any]] | None
    """Run name → grid values, from ``sweep.yaml`` (None when the folder has no manifest)."""
    failed: list[str]
    unreadable: list[str]
    exclude: str | tuple[str, ...] | None = None
    """Grid key(s) left out of the row variants (the tuned keys)."""
    reference: str = BASELINE
    """The row every other row is compared with in the paired tests (``report --reference``)."""
    conflicts: list[list[RunRecord]] = field(default_factory=list)
    """Groups of finished runs that claim one cell (row, variant, task, seed); left out of ``records``."""
    takeovers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Run name → the records of its ``takeovers.jsonl`` (stale claims another sweep worker took over)."""

    def expected_values(self, key: str) -> list[Any]:
        """The values of grid key ``key`` in grid order (manifest first, then runs found on disk)."""
        seen: list[Any] = []
        for values in [*(self.expected or {}).values(), *(r.grid_values for r in self.records)]:
            if key in values and repr(values[key]) not in map(repr, seen):
                seen.append(values[key])
        return seen

    @property
    def rows(self) -> list[tuple[str, str]]:
        """(score, variant) rows in grid order (baseline first), then any extra found on disk."""
        rows: list[tuple[str, str]] = []
        sources = [(_variant(v, self.exclude), v["score"]) for v in (self.expected or {}).values()]
        sources += [(r.variant, r.score) for r in self.records]
        for variant, score in sources:
            if (score, variant) not in rows:
                rows.append((score, variant))
        return sorted(rows, key=lambda row: (row[0] != self.reference, rows.index(row)))

    def values(self, row: tuple[str, str], task: str, split: str, metric: str) -> dict[int, float]:
        """Seed → value of ``row`` on ``task``; an error if two runs give one seed (never one of them silently)."""
        found: dict[int, float] = {}
        names: dict[int, str] = {}
        for record in self.records:
            if record.row == row and record.task == task and (value := record.value(split, metric)) is not None:
                if record.seed in found:
                    raise ValueError(
                        f"runs {names[record.seed]} and {record.name} are both seed {record.seed} of "
                        f"{row[0]} [{row[1]}] on {task}; keep one of them in the folder."
                    )
                found[record.seed], names[record.seed] = value, record.name
        return found

    def cell(self, row: tuple[str, str], column: Column) -> Cell:
        return summarize(self.values(row, column.task, column.split, column.metric))

    def expected_seeds(self, row: tuple[str, str], task: str) -> int | None:
        if self.expected is None:
            return None
        return sum(
            1 for v in self.expected.values() if (v["score"], _variant(v, self.exclude)) == row and v["task"] == task
        )

    def average(self, row: tuple[str, str], parts: Sequence[Sequence[tuple[str, str, str]]]) -> Cell | None:
        """Mean over ``parts`` (each a list of (task, split, metric) averaged into one number) of the part means;
        None if any part is missing. The std is over per-seed averages of the seeds complete in every part."""
        part_values = []
        for part in parts:
            per_metric = [self.values(row, *key) for key in part]
            seeds = set.intersection(*(set(v) for v in per_metric))
            if not seeds:
                return None
            part_values.append({s: statistics.fmean(v[s] for v in per_metric) for s in seeds})
        mean = statistics.fmean(statistics.fmean(v.values()) for v in part_values)
        complete = set.intersection(*(set(v) for v in part_values))
        per_seed = {s: statistics.fmean(v[s] for v in part_values) for s in complete}
        std = statistics.stdev(per_seed.values()) if len(per_seed) > 1 else None
        return Cell(mean, std, len(per_seed), per_seed)

    def paper_average(self, row: tuple[str, str], columns: Sequence[Column]) -> Cell | None:
        return self.average(row, [[(c.task, c.split, c.metric)] for c in columns])

    def glue_average(self, row: tuple[str, str]) -> Cell | None:
        return self.average(row, [[(task, s, m) for s, m in parts] for task, parts in GLUE_AVERAGE_PARTS.items()])

    def comparisons(self, columns: Sequence[Column]) -> list[Comparison]:
        """Every non-baseline row against the baseline row with the same variant, per column, Holm-adjusted."""
        found = []
        for row in self.rows:
            baseline = (self.reference, row[1])
            if row[0] == self.reference or baseline not in self.rows:
                continue
            for column in columns:
                key = (column.task, column.split, column.metric)
                n, difference, t, p = paired_test(self.values(row, *key), self.values(baseline, *key))
                found.append(Comparison(row, column.label, n, difference, t, p, None, higher_is_better(column.metric)))
        adjusted = holm([c.p for c in found])
        return [
            Comparison(c.row, c.column, c.n, c.mean_difference, c.t, c.p, a, c.higher_is_better)
            for c, a in zip(found, adjusted, strict=True)
        ]


def _variant(values: dict[str, Any], exclude: str | tuple[str, ...] | None = None) -> str:
    from adalora_scores.study.grid import run_name

    excluded = {exclude} if isinstance(exclude, str) else set(exclude or ())
    parts = run_name({k: v for k, v in values.items() if k not in excluded}).split("__")[2:-1]
    return ", ".join(parts)


def _row_label(config: dict[str, Any]) -> str:
    """The row of a run found without a manifest: its score, or ``lora_r<r>`` / ``svd_lora_r<r>`` for a baseline
    without allocation."""
    method = config.get("method", "adalora")
    return str(config["score"]) if method == "adalora" else f"{method}_r{config.get('target_r')}"


def _recorded_grid(folder: Path) -> dict[str, Any] | None:
    """The grid values in the run folder's ``grid.json`` (None when it has none; an error when it is corrupt)."""
    path = folder / GRID_FILE
    if not path.is_file():
        return None
    values = read_json(path)["grid_values"]
    if not isinstance(values, dict) or not {"task", "score", "seed"} <= set(values):
        raise ValueError(f"{path} lacks task, score or seed in its grid_values.")
    return dict(values)


def _read_takeovers(root: Path) -> dict[str, list[dict[str, Any]]]:
    found = {}
    for path in sorted(root.rglob(TAKEOVERS_FILE)):
        lines = path.read_text(encoding="utf-8").splitlines()
        records = []
        for line in lines:
            try:
                records.append(json.loads(line))
            except ValueError:
                records.append({"reason": "unreadable record"})
        found[str(path.parent.relative_to(root))] = records
    return found


def _split_conflicts(records: list[RunRecord]) -> tuple[list[RunRecord], list[list[RunRecord]]]:
    """(the records alone in their cell, the groups of records that share one (row, task, seed))."""
    groups: dict[tuple[str, str, str, int], list[RunRecord]] = {}
    for record in records:
        groups.setdefault((record.score, record.variant, record.task, record.seed), []).append(record)
    alone = [r for r in records if len(groups[(r.score, r.variant, r.task, r.seed)]) == 1]
    return alone, [group for group in groups.values() if len(group) > 1]


def collect(root: str | Path) -> Study:
    """Every finished run under ``root`` (any depth), the sweep manifest if there is one, failed runs, runs that
    conflict (one cell claimed twice) and taken-over runs. A run's grid values come from its ``grid.json``, else
    from the manifest, else from its config."""
    from adalora_scores.study.sweep import read_manifest

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder; give the --output folder of a sweep.")
    expected = read_manifest(root)["runs"] if (root / SWEEP_MANIFEST).is_file() else None
    records, unreadable = [], []
    for path in sorted(root.rglob(METRICS_FILE)):
        folder = path.parent
        name = str(folder.relative_to(root))
        try:
            metrics, config = read_json(path), read_config(folder)
            grid_values = (
                _recorded_grid(folder)
                or dict((expected or {}).get(name) or {})
                or {"task": config["task"], "score": _row_label(config), "seed": config["seed"]}
            )
            row_score, seed = str(grid_values["score"]), int(config["seed"])
            variant = _variant(grid_values)
            method = str(config.get("method", "adalora"))
            records.append(
                RunRecord(name, folder, str(config["task"]), row_score, seed, variant, metrics, grid_values, method)
            )
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
            unreadable.append(name)
    failed = sorted(str(p.parent.relative_to(root)) for p in root.rglob(ERROR_FILE) if not is_finished(p.parent))
    if not records and not expected:
        raise FileNotFoundError(f"{root} holds no finished runs (no {METRICS_FILE}) and no {SWEEP_MANIFEST}.")
    alone, conflicts = _split_conflicts(records)
    return Study(alone, expected, failed, unreadable, conflicts=conflicts, takeovers=_read_takeovers(root))


def generic_columns(study: Study, tasks: set[str], skip_splits: tuple[str, ...] = ()) -> list[Column]:
    """One column per (task, eval split) of ``tasks`` with the task's main metric, as the runs recorded it; the
    splits in ``skip_splits`` (e.g. ``selection``) left out."""
    columns: list[Column] = []
    for record in sorted(study.records, key=lambda r: r.task):
        metric = record.metrics.get("main_metric")
        if record.task not in tasks or metric is None:
            continue
        for split, values in record.metrics.get("eval", {}).items():
            label = f"{record.task} {metric}" if split == "dev" else f"{record.task} {split} {metric}"
            column = Column(label, record.task, split, metric)
            if split not in skip_splits and metric in values and column not in columns:
                columns.append(column)
    return columns


def run_problems(study: Study) -> str:
    """Markdown sections for the report on runs it must not pass over: conflicting runs (an error: one cell claimed
    by several runs, none of them counted) and runs taken over from a stale sweep worker. Empty when there are
    none."""
    sections = []
    if study.conflicts:
        lines = [
            "## ⚠ Error: runs that claim the same cell",
            "Each group below is several finished runs with one row, grid values, task and seed. None of them "
            "is counted in any table or test (which one is right cannot be told from the folder); move all but "
            "one out of the folder and report again.",
        ]
        for group in study.conflicts:
            first = group[0]
            label = f"`{first.score}`" + (f" [{first.variant}]" if first.variant else "")
            lines.append(f"- {label} on {first.task}, seed {first.seed}: " + ", ".join(f"`{r.name}`" for r in group))
        sections.append("\n\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]))
    if study.takeovers:
        finished = {r.name: r for group in [study.records, *study.conflicts] for r in group}
        lines = [
            "## Runs taken over from a stopped worker",
            "A sweep worker's claim on these runs went stale (its process ended, or its heartbeat stopped for "
            "longer than the claim timeout) and another worker took the run over:",
        ]
        for name, takeovers in study.takeovers.items():
            reasons = "; ".join(
                f"claim of {(t.get('previous') or {}).get('host', '?')}:{(t.get('previous') or {}).get('pid', '?')} "
                f"({t.get('reason', '?')})"
                for t in takeovers
            )
            record = finished.get(name)
            if record is None:
                outcome = "not finished"
            elif (step := record.metrics.get("resumed_from_step")) is not None:
                outcome = f"resumed from its checkpoint at step {step}"
            else:
                outcome = "trained again from the start"
            lines.append(f"- `{name}`: {reasons}; {outcome}")
        sections.append("\n\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]))
    return "\n\n".join(sections)
