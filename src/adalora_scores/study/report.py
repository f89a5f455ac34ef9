"""``report``: the seed paper's Tables 1 and 2 from a folder of runs, with seeds, paper values and paired tests.

Writes ``report.md``, ``table1.csv``/``table2.csv``/``tasks.csv`` (one line per cell; ``tasks``: the tasks outside
the paper), ``report.json`` (everything, including every seed's value and each comparison) and ``plots/*.png``.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adalora_scores.run_files import atomic_write
from adalora_scores.study import plots
from adalora_scores.study.paper import PAPER, TABLE1, TABLE2, Column
from adalora_scores.study.results import BASELINE, Cell, Study, collect
from adalora_scores.study.tuning import Choice, tune

__all__ = ["build_report", "format_cell"]

_STATS_NOTE = (
    "Cells: mean ± sample std (ddof 1) over seeds, (n) = seeds; `paper` = the seed paper's single-run value, "
    "Δ = ours − paper. Significance: two-sided paired t-test over seeds (`scipy.stats.ttest_rel`) of each score "
    "against `sensitivity` (AdaLoRA's original score) with the same other settings, on the seeds both ran; p_Holm is "
    "Holm-adjusted over all comparisons of the table. With few seeds a paired t-test has little power: a missing star "
    "means 'not shown to differ', not 'equal'."
)


_CAPTIONS = {
    "metrics": "Dev metric per score (mean ± std over seeds)",
    "ranks": "Final rank per layer and module, mean over seeds",
    "budget": "Total rank budget over training",
    "agreement": "Overlap of the kept triplets between scores (Jaccard, mean over seeds)",
}


def format_cell(cell: Cell | None, expected: int | None = None) -> str:
    if cell is None or cell.n == 0 or cell.mean is None:
        return "missing"
    text = f"{cell.mean:.2f}" + (f" ± {cell.std:.2f}" if cell.std is not None else "") + f" ({cell.n})"
    if expected is not None and cell.n < expected:
        text += f" ⚠ {expected - cell.n} of {expected} seeds missing"
    return text


def _paper_text(row: tuple[str, str], label: str, mean: float | None) -> str:
    paper = PAPER.get((row[0], label))
    if paper is None:
        return ""
    return f" · paper {paper:.2f}" + (f" · Δ {mean - paper:+.2f}" if mean is not None else "")


def _label(row: tuple[str, str]) -> str:
    return f"`{row[0]}`" + (f" [{row[1]}]" if row[1] else "")


def _parameters(study: Study, row: tuple[str, str], tasks: set[str]) -> str:
    """Mean final adapter parameters (head excluded) over the row's runs on ``tasks``."""
    counts = [r.metrics["adapter_parameters"] for r in study.records
              if r.row == row and r.task in tasks and "adapter_parameters" in r.metrics]  # fmt: skip
    return f"{statistics.fmean(counts) / 1e6:.3g}M" if counts else "–"


def _table(
    study: Study, columns: Sequence[Column], averages: bool, chosen: dict[tuple, Any] | None = None, key: str = ""
) -> tuple[str, list[dict[str, Any]]]:
    headers = ["score", "adapter params", *(c.label for c in columns)]
    if averages:
        headers += ["All Ave. (paper convention)", "GLUE avg. (standard)"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    cells: list[dict[str, Any]] = []
    for row in study.rows:
        texts = [_label(row), _parameters(study, row, {c.task for c in columns})]
        for column in columns:
            cell = study.cell(row, column)
            text = format_cell(cell, study.expected_seeds(row, column.task)) + _paper_text(
                row, column.label, cell.mean
            )
            if chosen is not None and (row, column.task) in chosen:
                text += f" · {key} {chosen[(row, column.task)]}"
            texts.append(text)
            paper = PAPER.get((row[0], column.label))
            cells.append({"score": row[0], "variant": row[1], "column": column.label, "task": column.task,
                          "split": column.split, "metric": column.metric, "mean": cell.mean, "std": cell.std,
                          "n": cell.n, "paper": paper, "difference": None if paper is None or cell.mean is None
                          else cell.mean - paper, "values": cell.values,
                          "chosen": None if chosen is None else chosen.get((row, column.task))})  # fmt: skip
        if averages:
            paper_average = study.paper_average(row, columns)
            texts.append(
                format_cell(paper_average) + _paper_text(row, "All Ave.", paper_average and paper_average.mean)
            )
            texts.append(format_cell(study.glue_average(row)))
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines), cells


def _significance(study: Study, columns: Sequence[Column]) -> tuple[str, list[dict[str, Any]]]:
    comparisons = [c for c in study.comparisons(columns) if c.n > 0]
    if not comparisons:
        return f"No score has runs paired with `{BASELINE}` here.", []
    lines = ["| score | column | n | mean Δ vs sensitivity | t | p | p_Holm |", "|---|---|---:|---:|---:|---:|---:|"]
    for c in comparisons:
        star = " *" if c.p_holm is not None and c.p_holm < 0.05 else ""
        number = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
        lines.append(f"| {_label(c.row)} | {c.column} | {c.n} | {number(c.mean_difference, '+.2f')} | "
                     f"{number(c.t, '.2f')} | {number(c.p, '.3f')} | {number(c.p_holm, '.3f')}{star} |")  # fmt: skip
    rows = [
        {"score": c.row[0], "variant": c.row[1], "column": c.column, "n": c.n, "mean_difference": c.mean_difference,
         "t": c.t, "p": c.p, "p_holm": c.p_holm}
        for c in comparisons
    ]  # fmt: skip
    note = "\n\n`*`: p_Holm < 0.05. n/a: fewer than 2 paired seeds, or identical differences on every seed."
    return "\n".join(lines) + note, rows


def _csv(cells: list[dict[str, Any]]) -> str:
    stream = io.StringIO()
    fields = ["score", "variant", "column", "task", "split", "metric", "mean", "std", "n", "paper", "difference"]
    writer = csv.DictWriter(stream, fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(cells)
    return stream.getvalue()


def _tuning_note(key: str, select_on: str) -> str:
    if select_on == "dev":
        return (f"**Tuned mode, selected on dev.** Per score and task, `{key}` is the grid value with the best mean "
                "over seeds of the task's main metric on the dev set, and the cells report that value's dev results: "
                "the numbers are selected on the data they are reported on (the usual GLUE practice), so they are "
                "optimistic.")  # fmt: skip
    return (f"**Tuned mode, selected on a held-out split.** Per score and task, `{key}` is the grid value with the "
            "best mean over seeds of the task's main metric on the `selection` split, held out from the training "
            "data (`selection_fraction`, seeded by `selection_seed`, never trained on); the cells report that value's "
            "dev results, which played no part in the choice. The chosen value follows each cell; the appendix lists "
            "the whole grid.")  # fmt: skip


def _appendix(choices: list[Choice], key: str, select_on: str) -> str:
    lines = [
        f"| score | task | {key} | {select_on} (main metric) | dev (main metric) | chosen |",
        "|---|---|---|---|---|---|",
    ]
    for choice in sorted(choices, key=lambda c: (c.task, c.row)):
        for candidate in choice.candidates:
            mark = "✓" if repr(candidate.value) == repr(choice.chosen) else ""
            lines.append(f"| {_label(choice.row)} | {choice.task} | {candidate.value} | "
                         f"{format_cell(candidate.selection)} | {format_cell(candidate.dev)} | {mark} |")  # fmt: skip
    return "\n".join(lines)


def generic_columns(study: Study, tasks: set[str]) -> list[Column]:
    """One column per (task, eval split) of ``tasks`` with the task's main metric, as the runs recorded it."""
    columns: list[Column] = []
    for record in sorted(study.records, key=lambda r: r.task):
        metric = record.metrics.get("main_metric")
        if record.task not in tasks or metric is None:
            continue
        for split, values in record.metrics.get("eval", {}).items():
            label = f"{record.task} {metric}" if split == "dev" else f"{record.task} {split} {metric}"
            column = Column(label, record.task, split, metric)
            if metric in values and column not in columns:
                columns.append(column)
    return columns


def build_report(
    root: str | Path,
    *,
    title: str = "AdaLoRA score study",
    notes: str = "",
    plot: bool = True,
    tune_key: str | None = None,
    select_on: str = "selection",
) -> Path:
    """Read every run under ``root`` and write the report files there; returns the path of ``report.md``.

    With ``tune_key`` (e.g. ``learning_rate``) the tables are in tuned mode (see ``adalora_scores.study.tuning``).
    """
    root = Path(root)
    study = collect(root)
    choices: list[Choice] = []
    if tune_key is not None:
        study, choices = tune(study, tune_key, select_on)
        notes = (notes + "\n\n" + _tuning_note(tune_key, select_on)).strip()
    chosen = {(c.row, c.task): c.chosen for c in choices} if tune_key else None
    tasks = {r.task for r in study.records} | {v["task"] for v in (study.expected or {}).values()}
    sections = [f"# {title}", notes.strip(), _STATS_NOTE] if notes.strip() else [f"# {title}", _STATS_NOTE]
    tuned = None if tune_key is None else {"key": tune_key, "select_on": select_on}
    document: dict[str, Any] = {"runs": len(study.records), "failed": study.failed, "unreadable": study.unreadable,
                                "tuned": tuned}  # fmt: skip
    other = generic_columns(study, tasks - {c.task for c in (*TABLE1, *TABLE2)})
    for key, heading, columns, averages in (
        ("table1", "Table 1: GLUE dev", TABLE1, True),
        ("table2", "Table 2: SQuAD v1.1 / v2.0 dev, EM and F1", TABLE2, False),
        ("tasks", "Other tasks: main metric per evaluation split", tuple(other), False),
    ):
        if not tasks & {c.task for c in columns}:
            continue
        table, cells = _table(study, columns, averages, chosen, tune_key or "")
        significance, tests = _significance(study, columns)
        sections += [f"## {heading}", table, f"### Significance against `{BASELINE}`", significance]
        if averages:
            sections.append(
                "All Ave. (paper convention): mean of the nine columns above, MNLI m and mm counted separately, as "
                "the seed paper computes it. GLUE avg. (standard): mean over the eight tasks, one number per task, "
                "averaging MRPC and QQP accuracy and F1, STS-B Pearson and Spearman, and MNLI m and mm; WNLI "
                "excluded. Either is shown only when every task has a result."
            )
        atomic_write(root / f"{key}.csv", _csv(cells))
        document[key] = {"cells": cells, "significance": tests}
    missing = sorted(set(study.expected or {}) - {r.name for r in study.records})
    if missing or study.failed or study.unreadable:
        sections.append("## Missing runs")
        sections.append(f"{len(missing)} of {len(study.expected or {})} runs of the sweep have no result; they are "
                        "left out of every mean above, never filled in.")  # fmt: skip
        sections += [f"- `{name}`" + (" (failed: see error.txt)" if name in study.failed else "") for name in missing]
        sections += [f"- `{name}`: unreadable metrics.json or config.yaml" for name in study.unreadable]
    document["missing"] = missing
    if choices:
        sections += [f"## Appendix: the whole `{tune_key}` grid", _appendix(choices, tune_key, select_on)]
        document["choices"] = [
            {"score": c.row[0], "variant": c.row[1], "task": c.task, "chosen": c.chosen,
             "candidates": [{"value": k.value, "selection": k.selection.mean, "selection_n": k.selection.n,
                             "dev": k.dev.mean, "dev_n": k.dev.n} for k in c.candidates]}
            for c in choices
        ]  # fmt: skip
    if plot:
        written = plots.plot_all(study, [*TABLE1, *TABLE2, *other], root / "plots")
        document["plots"] = written
        sections.append("## Plots")
        for kind, caption in _CAPTIONS.items():
            for name in written[kind]:
                sections.append(f"**{caption}** ({name}):\n\n![{caption}](plots/{name})")
    atomic_write(root / "report.json", json.dumps(document, indent=2, default=str) + "\n")
    atomic_write(root / "report.md", "\n\n".join(sections) + "\n")
    return root / "report.md"
