"""Tuned reporting: per (row, task), pick the value of a grid key (the learning rate) by its mean over seeds on a
selection split, then report that value's dev results.

* ``select_on="selection"`` (default): the task's main metric on the ``selection`` split, held out from the training
  data (``selection_fraction``), so the dev numbers are not selected on the data they are reported on.
* ``select_on="dev"``: the main metric on the dev split(s) (MNLI: the mean of matched and mismatched), as GLUE papers
  usually do; the report labels it, since the reported numbers are then selected on themselves.

The best value is the largest mean, or the smallest for a lower-is-better main metric (``mse``; the registry is
``adalora_scores.metrics.direction``); each :class:`Choice` records the metric and its direction. Ties go to the
value listed first in the grid.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Any

from adalora_scores.metrics.direction import higher_is_better
from adalora_scores.study.results import Cell, RunRecord, Study, _variant, summarize

__all__ = ["Candidate", "Choice", "selection_value", "tune"]

SELECT_ON = ("selection", "dev")


def selection_value(record: RunRecord, select_on: str) -> float | None:
    """The run's main metric on the selection split, or its mean over the dev splits."""
    main, evals = record.metrics.get("main_metric"), record.metrics.get("eval", {})
    if select_on == "selection":
        return evals.get("selection", {}).get(main)
    values = [split[main] for name, split in evals.items() if name != "selection" and main in split]
    return statistics.fmean(values) if values else None


@dataclass(frozen=True)
class Candidate:
    value: Any
    selection: Cell
    dev: Cell


@dataclass(frozen=True)
class Choice:
    row: tuple[str, str]
    task: str
    chosen: Any
    candidates: list[Candidate]
    metric: str | None = None
    """The main metric the choice was made on (the runs' ``main_metric``)."""
    lower_is_better: bool = False
    """True when the chosen value has the *smallest* mean (e.g. ``mse``); reports should say so."""


def _main_metric(row: tuple[str, str], task: str, records: list[RunRecord]) -> str | None:
    """The one main metric of a group of runs; runs that rank on different metrics cannot be compared."""
    metrics = sorted({str(m) for r in records if (m := r.metrics.get("main_metric")) is not None})
    if len(metrics) > 1:
        raise ValueError(f"{row[0]} on {task}: the runs rank on different main metrics ({', '.join(metrics)}); "
                         "give every run of a task the same task_options.main_metric.")  # fmt: skip
    return metrics[0] if metrics else None


def tune(study: Study, key: str, select_on: str = "selection") -> tuple[Study, list[Choice]]:
    """The study restricted to the chosen value of ``key`` per (row without ``key``, task), and every choice."""
    if select_on not in SELECT_ON:
        raise ValueError(f"select_on must be one of {SELECT_ON}, got {select_on!r}.")
    if not any(key in r.grid_values for r in study.records):
        raise ValueError(f"no run has a grid value for {key!r}; tuned mode needs a sweep whose grid lists {key}.")
    grid_order = {repr(v): i for i, v in enumerate(study.expected_values(key))}
    groups: dict[tuple[tuple[str, str], str], dict[str, list[RunRecord]]] = {}
    for record in study.records:
        row = (record.score, _variant(record.grid_values, exclude=key))
        groups.setdefault((row, record.task), {}).setdefault(repr(record.grid_values.get(key)), []).append(record)
    choices, kept = [], []
    for (row, task), by_value in groups.items():
        candidates = []
        for _, records in sorted(by_value.items(), key=lambda item: grid_order.get(item[0], len(grid_order))):
            picked = {r.seed: v for r in records if (v := selection_value(r, select_on)) is not None}
            dev = {r.seed: v for r in records if (v := selection_value(r, "dev")) is not None}
            candidates.append(Candidate(records[0].grid_values.get(key), summarize(picked), summarize(dev)))
        # NaN (an undefined correlation, e.g. constant predictions) is no result: it must not win or block a choice
        scored = [c for c in candidates if c.selection.mean is not None and not math.isnan(c.selection.mean)]
        if not scored:
            raise ValueError(
                f"{row[0]} on {task}: no run has a '{select_on}' result to select on. Train with "
                "selection_fraction > 0 (e.g. selection_fraction=0.1), or report with --select-on dev."
            )
        metric = _main_metric(row, task, [r for records in by_value.values() for r in records])
        lower = metric is not None and not higher_is_better(metric)
        pick = min if lower else max  # the first extreme: grid order breaks ties
        best = pick(scored, key=lambda c: c.selection.mean)
        choices.append(Choice(row, task, best.value, candidates, metric, lower))
        kept += [dataclasses.replace(r, variant=row[1]) for r in by_value[repr(best.value)]]
    expected = None
    if study.expected is not None:
        chosen = {(c.row, c.task): repr(c.chosen) for c in choices}
        expected = {
            name: values
            for name, values in study.expected.items()
            if chosen.get(((values["score"], _variant(values, exclude=key)), values["task"]), repr(values.get(key)))
            == repr(values.get(key))
        }
    return Study(kept, expected, study.failed, study.unreadable, exclude=key, reference=study.reference), choices
