"""Tuned reporting: per (row, task), pick the value of a grid key (the learning rate), or the combination of values
of several keys (``learning_rate,orth_reg_weight,lora_alpha``), by its mean over seeds on a selection split, then
report that choice's dev results. The candidates are the combinations that ran (not the full product of the grids).

* ``select_on="selection"`` (default): the task's main metric on the ``selection`` split, held out from the training
  data (``selection_fraction``), so the dev numbers are not selected on the data they are reported on.
* ``select_on="dev"``: the main metric on the dev split(s) (MNLI: the mean of matched and mismatched), as GLUE papers
  usually do; the report labels it, since the reported numbers are then selected on themselves.

The best value is the largest mean, or the smallest for a lower-is-better main metric (``mse``; the registry is
``adalora_scores.metrics.direction``); each :class:`Choice` records the metric and its direction. Ties go to the
value listed first in the grid (for several keys: the first key's grid order first, then the next key's).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from adalora_scores.metrics.direction import higher_is_better
from adalora_scores.study.results import Cell, RunRecord, Study, _variant, summarize

__all__ = ["Candidate", "Choice", "selection_value", "tune", "tuned_keys"]

SELECT_ON = ("selection", "dev")


def selection_value(record: RunRecord, select_on: str) -> float | None:
    """The run's main metric on the selection split, or its mean over the dev splits."""
    main, evals = record.metrics.get("main_metric"), record.metrics.get("eval", {})
    if select_on == "selection":
        return evals.get("selection", {}).get(main)
    values = [split[main] for name, split in evals.items() if name != "selection" and main in split]
    return statistics.fmean(values) if values else None


def tuned_keys(keys: str | Sequence[str]) -> tuple[str, ...]:
    """``"learning_rate,orth_reg_weight"`` (or a sequence of names) → the distinct key names, in the order given."""
    names = keys.split(",") if isinstance(keys, str) else list(keys)
    cleaned = tuple(dict.fromkeys(name.strip() for name in names if name.strip()))
    if not cleaned:
        raise ValueError(f"--tuned needs at least one grid key (e.g. learning_rate), got {keys!r}.")
    return cleaned


@dataclass(frozen=True)
class Candidate:
    value: Any
    """The key's value; with several tuned keys, the combination as a mapping key → value."""
    selection: Cell
    dev: Cell
    values: dict[str, Any] = field(default_factory=dict)
    """Key → value, whatever the number of keys."""


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
    chosen_values: dict[str, Any] = field(default_factory=dict)
    """Key → chosen value, whatever the number of keys."""


def _main_metric(row: tuple[str, str], task: str, records: list[RunRecord]) -> str | None:
    """The one main metric of a group of runs; runs that rank on different metrics cannot be compared."""
    metrics = sorted({str(m) for r in records if (m := r.metrics.get("main_metric")) is not None})
    if len(metrics) > 1:
        raise ValueError(
            f"{row[0]} on {task}: the runs rank on different main metrics ({', '.join(metrics)}); "
            "give every run of a task the same task_options.main_metric."
        )
    return metrics[0] if metrics else None


def tune(study: Study, key: str | Sequence[str], select_on: str = "selection") -> tuple[Study, list[Choice]]:
    """The study restricted to the chosen value of ``key`` per (row without ``key``, task), and every choice.

    ``key`` may name several grid keys (``"learning_rate,orth_reg_weight"`` or a sequence): the choice is then the
    best combination of their values among the runs, and ``Choice.chosen`` a mapping key → value."""
    if select_on not in SELECT_ON:
        raise ValueError(f"select_on must be one of {SELECT_ON}, got {select_on!r}.")
    keys = tuned_keys(key)
    for name in keys:
        if not any(name in r.grid_values for r in study.records):
            raise ValueError(
                f"no run has a grid value for {name!r}; tuned mode needs a sweep whose grid lists {name}."
            )
    orders = [{repr(v): i for i, v in enumerate(study.expected_values(name))} for name in keys]
    excluded = keys[0] if len(keys) == 1 else keys

    def combination(values: dict[str, Any]) -> tuple[str, ...]:
        return tuple(repr(values.get(name)) for name in keys)

    def grid_position(reprs: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(order.get(text, len(order)) for order, text in zip(orders, reprs, strict=True))

    groups: dict[tuple[tuple[str, str], str], dict[tuple[str, ...], list[RunRecord]]] = {}
    for record in study.records:
        row = (record.score, _variant(record.grid_values, exclude=excluded))
        groups.setdefault((row, record.task), {}).setdefault(combination(record.grid_values), []).append(record)
    choices, kept = [], []
    for (row, task), by_value in groups.items():
        candidates = []
        for _, records in sorted(by_value.items(), key=lambda item: grid_position(item[0])):
            picked = {r.seed: v for r in records if (v := selection_value(r, select_on)) is not None}
            dev = {r.seed: v for r in records if (v := selection_value(r, "dev")) is not None}
            values = {name: records[0].grid_values.get(name) for name in keys}
            value = values[keys[0]] if len(keys) == 1 else values
            candidates.append(Candidate(value, summarize(picked), summarize(dev), values))
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
        choices.append(Choice(row, task, best.value, candidates, metric, lower, best.values))
        kept += [dataclasses.replace(r, variant=row[1]) for r in by_value[combination(best.values)]]
    expected = None
    if study.expected is not None:
        chosen = {(c.row, c.task): combination(c.chosen_values) for c in choices}
        expected = {
            name: values
            for name, values in study.expected.items()
            if chosen.get(((values["score"], _variant(values, exclude=excluded)), values["task"]), combination(values))
            == combination(values)
        }
    return dataclasses.replace(study, records=kept, expected=expected, exclude=excluded), choices
