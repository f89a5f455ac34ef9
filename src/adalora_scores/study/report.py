"""``report``: the score-function study's Tables 1 and 2 from a folder of runs, with seeds, paper values, paired
tests and score diagnostics.

Tables show only the columns that have results; the paper's values for them sit in a reference table below each
(Table 1 keeps the paper's nine-column layout and averages when every column has results). Writes ``report.md``,
``table1.csv``/``table2.csv``/``tasks.csv`` (one line per cell; ``tasks``: the tasks outside the paper),
``report.json`` (everything, including every seed's value, each comparison and the diagnostics) and ``plots/*.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from adalora_scores.config import effective_update_scale
from adalora_scores.runs.files import atomic_write, read_config
from adalora_scores.study import plots
from adalora_scores.study.diagnostics import PERMUTATIONS, Diagnostics, Reliability, diagnose, triplet_rows
from adalora_scores.study.gap import gap_section
from adalora_scores.study.paper import PAPER, PAPER_ROWS, TABLE1, TABLE2, Column
from adalora_scores.study.power import ALPHA, POWER, SEEDS_CAP, TARGET_DIFFERENCE, Claim, claim, claim_sentence
from adalora_scores.study.results import (
    BASELINE,
    Cell,
    Comparison,
    RunRecord,
    Study,
    collect,
    generic_columns,
    run_problems,
)
from adalora_scores.study.tuning import Choice, tune, tuned_keys

__all__ = ["build_report", "format_cell"]


def _stats_note(reference: str) -> str:
    return (
        "Cells: mean ± sample std (ddof 1) over seeds, (n) = seeds; Δ paper = ours − the study's single-run "
        "value (listed in the reference table under each table). Only columns with results are shown. Significance: "
        f"two-sided paired t-test over seeds (`scipy.stats.ttest_rel`) of each score against `{reference}`"
        + (" (AdaLoRA's original score)" if reference == BASELINE else "")
        + " with the same other settings, on the seeds both ran; p_Holm is Holm-adjusted over all comparisons of the "
        "table. With few seeds a paired t-test has little power: no star means 'not shown to differ', not 'equal'."
    )


_CAPTIONS = {
    "metrics": "Dev metric per score (mean ± std over seeds)",
    "ranks": "Final rank per layer and module, mean over seeds",
    "agreement": "Jaccard agreement of the final kept triplets (diagonal: one score across seeds; elsewhere: two "
    "scores on the same seed, mean over seeds)",
    "churn": "Churn: share of the kept set that is new at each allocation (mean over seeds)",
    "trajectories": "Kept rank per module type over training (mean over seeds)",
}

_DIAGNOSTICS_NOTE = (
    "Does a score estimate something stable, and how does it spend the budget? From each run's `rank_pattern.json`, "
    "`allocations.jsonl` and `triplet_scores.json`; LoRA baselines have no triplets and are left out; SVD-LoRA rows "
    "(`svd_lora`) have triplets but no allocation, so they show no kept set, agreement or churn. **Jaccard "
    "across seeds**: J = |A ∩ B| / |A ∪ B| of the final kept triplets of two seeds of one score, mean over seed "
    "pairs; **chance**: the expected J of two random kept sets of the same sizes; **p (vs chance)**: the one-sided "
    "p-value of that mean J under H0, each seed's kept set an independent uniformly random subset of the same size of "
    "the same triplets (two seeds: exact, hypergeometric; more: a seeded permutation test with "
    f"{PERMUTATIONS:,} draws). A score is called above chance only where p < 0.05. A score that disagrees with "
    "itself across seeds is measuring noise: its kept set is set by the seed, not by what it claims to estimate. "
    "**Spearman across seeds**: ρ of the final triplet scores between seeds. **Mean churn**: "
    "`churn_t = |K_t \\ K_(t−1)| / |K_t|`, the share of the kept set not kept at the previous allocation (0: the "
    "score only prunes; high: it keeps changing its mind), mean over allocations and seeds. The Spearman matrix "
    "compares two scores' final triplet scores on the same seed (mean over seeds; diagonal: one score across seeds). "
    "Agreement between two scores on one seed shares the initialisation and data order, which the diagonal does not."
)


def format_cell(cell: Cell | None, expected: int | None = None) -> str:
    if cell is None or cell.n == 0 or cell.mean is None:
        return "missing"
    text = f"{cell.mean:.2f}" + (f" ± {cell.std:.2f}" if cell.std is not None else "") + f" ({cell.n})"
    if expected is not None and cell.n < expected:
        text += f" ⚠ {expected - cell.n} of {expected} seeds missing"
    return text


def _paper_text(row: tuple[str, str], label: str, mean: float | None) -> str:
    """`` · Δ paper +x.xx`` where the row has a result and the paper a value; nothing otherwise."""
    paper = PAPER.get((row[0], label))
    return "" if paper is None or mean is None else f" · Δ paper {mean - paper:+.2f}"


def _paper_table(columns: Sequence[Column], averages: bool) -> str | None:
    """The study's values for ``columns`` (and its All Ave. with ``averages``), one row per paper score."""
    labels = [c.label for c in columns] + (["All Ave."] if averages else [])
    scores = list(dict.fromkeys(score for score, label in PAPER if label in labels))
    if not scores:
        return None
    lines = ["| Kim et al. (single runs) | " + " | ".join(labels) + " |", "|" + "---|" * (len(labels) + 1)]
    for score in scores:
        values = [PAPER.get((score, label)) for label in labels]
        lines.append(f"| `{score}` | " + " | ".join("–" if v is None else f"{v:.2f}" for v in values) + " |")
    estimators = "; ".join(f"`{score}` = {PAPER_ROWS[score]}" for score in scores if score in PAPER_ROWS)
    lines.append(
        f"\nThe paper's rows, by its definitions, and the estimator each column used: {estimators}. The "
        "mini-batch `fisher` and `gsnr` estimate the same formulas from one mini-batch gradient per step: "
        "ablation rows, without a paper value."
    )
    return "\n".join(lines)


def shown_columns(study: Study, columns: Sequence[Column]) -> list[Column]:
    """The ``columns`` in which at least one row has a result."""
    return [c for c in columns if any(study.cell(row, c).n for row in study.rows)]


def _label(row: tuple[str, str]) -> str:
    return f"`{row[0]}`" + (f" [{row[1]}]" if row[1] else "")


def _row_fields(row: tuple[str, str]) -> dict[str, str]:
    """A row's ``score`` and ``variant``, the first keys of each of its entries in ``report.json``."""
    return {"score": row[0], "variant": row[1]}


def _parameters(study: Study, row: tuple[str, str], tasks: set[str]) -> str:
    """Mean final adapter parameters (head excluded) over the row's runs on ``tasks``."""
    runs = [r for r in study.records if r.row == row and r.task in tasks]
    counts = [r.metrics["adapter_parameters"] for r in runs if "adapter_parameters" in r.metrics]
    return f"{statistics.fmean(counts) / 1e6:.3g}M" if counts else "–"


SETTINGS = (
    ("orth_reg_weight", "γ (orth_reg_weight)"),
    ("lora_alpha", "α (lora_alpha)"),
    ("update_scale", "c = α / r (update scale)"),
    ("learning_rate", "learning_rate"),
)
"""The settings the report shows per row: the regulariser's weight, α, the update scale c it gives with the method's
rank (``adalora_scores.config.effective_update_scale``) and the learning rate."""


def _setting_text(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def _used_text(used: dict[str, tuple[Any, dict[str, list[int]]]]) -> str:
    """One value as it is; several values, each with the runs (task, seeds) that used it."""
    if len(used) <= 1:
        return "–" if not used else _setting_text(next(iter(used.values()))[0])
    parts = []
    for value, runs in used.values():
        runs_text = "; ".join(
            f"{task} seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}" for task, seeds in runs.items()
        )
        parts.append(f"{_setting_text(value)} ({runs_text})")
    return " · ".join(parts)


def _settings(study: Study, tasks: set[str]) -> tuple[str, list[dict[str, Any]]]:
    """Per row, the :data:`SETTINGS` its runs on ``tasks`` ran with (from each run's ``config.yaml``); where the runs
    differ, every value with the runs (task, seeds) that used it. γ is left out for LoRA runs (no regulariser)."""
    configs: dict[Path, dict[str, Any]] = {}

    def config(record: RunRecord) -> dict[str, Any]:
        if record.folder not in configs:
            try:
                configs[record.folder] = read_config(record.folder)
            except (OSError, ValueError):
                configs[record.folder] = {}
        return configs[record.folder]

    lines = ["| score | " + " | ".join(label for _, label in SETTINGS) + " |", "|---|" + "---|" * len(SETTINGS)]
    rows = []
    for row in study.rows:
        records = [r for r in study.records if r.row == row and r.task in tasks]
        records.sort(key=lambda r: (r.task, r.seed))
        if not records:
            continue
        texts, found = [], {}
        for key, _ in SETTINGS:
            used: dict[str, tuple[Any, dict[str, list[int]]]] = {}
            for record in records:
                values = config(record)
                if key == "update_scale" and values:
                    value = round(effective_update_scale(values), 6)
                elif key not in values or (key == "orth_reg_weight" and record.method == "lora"):
                    continue
                else:
                    value = values[key]
                runs = used.setdefault(repr(value), (value, {}))[1]
                runs.setdefault(record.task, []).append(record.seed)
            found[key] = [
                {"value": value, "runs": [[task, seed] for task, seeds in runs.items() for seed in seeds]}
                for value, runs in used.values()
            ]
            texts.append(_used_text(used))
        lines.append(f"| {_label(row)} | " + " | ".join(texts) + " |")
        rows.append({**_row_fields(row), **found})
    note = (
        "From each run's `config.yaml`. Where the runs of a row differ, every value is listed with the runs "
        "(task, seeds) that used it. γ is not shown for LoRA rows, which have no regulariser."
    )
    return "\n".join(lines) + "\n\n" + note, rows


def _chosen_text(choice: Choice) -> str:
    """``learning_rate 0.001`` (one tuned key) or ``learning_rate 0.001, orth_reg_weight 0.0`` (several)."""
    return ", ".join(f"{key} {value}" for key, value in choice.chosen_values.items())


def _table(
    study: Study, columns: Sequence[Column], averages: bool, chosen: dict[tuple, Choice] | None = None
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
            choice = (chosen or {}).get((row, column.task))
            expected = study.expected_seeds(row, column.task)
            text = format_cell(cell, expected) + _paper_text(row, column.label, cell.mean)
            texts.append(text if choice is None else f"{text} · {_chosen_text(choice)}")
            paper = PAPER.get((row[0], column.label))
            cells.append(
                {
                    **_row_fields(row),
                    "column": column.label,
                    "task": column.task,
                    "split": column.split,
                    "metric": column.metric,
                    "mean": cell.mean,
                    "std": cell.std,
                    "n": cell.n,
                    "paper": paper,
                    "difference": None if paper is None or cell.mean is None else cell.mean - paper,
                    "values": cell.values,
                    "chosen": None if choice is None else choice.chosen,
                }
            )
        if averages:
            average = study.paper_average(row, columns)
            difference = _paper_text(row, "All Ave.", average and average.mean)
            texts += [format_cell(average) + difference, format_cell(study.glue_average(row))]
        lines.append("| " + " | ".join(texts) + " |")
    return "\n".join(lines), cells


def _claims(study: Study, columns: Sequence[Column]) -> list[tuple[Comparison, Claim]]:
    """Each comparison with at least one paired seed, with its interval, MDD and seeds needed
    (:mod:`adalora_scores.study.power`) from the same paired differences."""
    by_label = {column.label: column for column in columns}
    found = []
    for comparison in study.comparisons(columns):
        if comparison.n == 0:
            continue
        column = by_label[comparison.column]
        key = (column.task, column.split, column.metric)
        ours, reference = study.values(comparison.row, *key), study.values((study.reference, comparison.row[1]), *key)
        differences = [ours[s] - reference[s] for s in sorted(set(ours) & set(reference))]
        found.append((comparison, claim(differences)))
    return found


def _power_note(reference: str) -> str:
    return (
        f"Δ: mean paired difference (row − `{reference}`) with its 95% interval, Δ ± t_(0.975, n−1) · s_d / √n over "
        f"the n seeds both ran (s_d: std of the paired differences). MDD: the minimum detectable difference, the "
        f"true |Δ| the two-sided paired t-test at α = {ALPHA:g} finds with {POWER:.0%} power given s_d and n (exact, "
        "noncentral t); a smaller true difference would likely have gone unseen, so a row without a star is "
        "'not shown to differ by MDD or more', not 'equal'. Seeds for "
        f"{TARGET_DIFFERENCE:g}: the smallest n with {POWER:.0%} power to detect {TARGET_DIFFERENCE:g} points at this "
        f"s_d (searched up to {SEEDS_CAP}). Both take the observed s_d as the true one, so they are as rough as s_d "
        "over few seeds."
    )


def _significance(study: Study, columns: Sequence[Column]) -> tuple[str, list[dict[str, Any]]]:
    claims = _claims(study, columns)
    if not claims:
        return f"No score has runs paired with `{study.reference}` here.", []
    lines = [
        f"| score | column | n | mean Δ vs {study.reference} | 95% interval | t | p | p_Holm | MDD (80%) | "
        f"seeds for {TARGET_DIFFERENCE:g} |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    number = lambda v, f: "n/a" if v is None else format(v, f)  # noqa: E731
    sentences, rows = [], []
    for c, result in claims:
        star = " *" if c.p_holm is not None and c.p_holm < 0.05 else ""
        interval = "n/a" if result.low is None else f"[{result.low:+.2f}, {result.high:+.2f}]"
        seeds = f"> {SEEDS_CAP}" if result.seeds_for_target is None else str(result.seeds_for_target)
        needed = "n/a" if result.std_difference in (None, 0.0) else seeds
        lines.append(
            f"| {_label(c.row)} | {c.column} | {c.n} | {number(c.mean_difference, '+.2f')} | {interval} | "
            f"{number(c.t, '.2f')} | {number(c.p, '.3f')} | {number(c.p_holm, '.3f')}{star} | "
            f"{number(result.detectable, '.2f')} | {needed} |"
        )
        sentence = claim_sentence(_label(c.row), study.reference, c.column, result, c.p_holm, c.higher_is_better)
        sentences.append(f"- {sentence}")
        rows.append(
            {
                **_row_fields(c.row),
                "column": c.column,
                "n": c.n,
                "mean_difference": c.mean_difference,
                "low": result.low,
                "high": result.high,
                "std_difference": result.std_difference,
                "t": c.t,
                "p": c.p,
                "p_holm": c.p_holm,
                "detected": c.p_holm is not None and c.p_holm < 0.05,
                "detectable_difference": result.detectable,
                "target_difference": TARGET_DIFFERENCE,
                "seeds_for_target": result.seeds_for_target,
                "seeds_cap": SEEDS_CAP,
                "power": POWER,
                "alpha": ALPHA,
                "power_not_available": result.why_not,
                "sentence": sentence,
            }
        )
    note = "\n\n`*`: p_Holm < 0.05. n/a: fewer than 2 paired seeds, or identical differences on every seed."
    text = "\n".join(lines) + note + "\n\n" + _power_note(study.reference) + "\n\n" + "\n".join(sentences)
    return text, rows


def _csv(cells: list[dict[str, Any]]) -> str:
    stream = io.StringIO()
    fields = ["score", "variant", "column", "task", "split", "metric", "mean", "std", "n", "paper", "difference"]
    writer = csv.DictWriter(stream, fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(cells)
    return stream.getvalue()


def _tuned_names(keys: Sequence[str]) -> str:
    return ", ".join(f"`{key}`" for key in keys)


def _tuning_note(keys: Sequence[str], select_on: str) -> str:
    if len(keys) > 1:
        what = (
            f"the combination of {_tuned_names(keys)} is the one, among the combinations that ran, with the best mean"
        )
        text = _tuning_note_text(what, select_on)
        return text.replace("that value's", "that combination's").replace("chosen value", "chosen combination")
    return _tuning_note_text(f"`{keys[0]}` is the grid value with the best mean", select_on)


def _tuning_note_text(what: str, select_on: str) -> str:
    if select_on == "dev":
        return (
            f"**Tuned mode, selected on dev.** Per score and task, {what} "
            "over seeds of the task's main metric on the dev set, and the cells report that value's dev results: "
            "the numbers are selected on the data they are reported on (the usual GLUE practice), so they are "
            "optimistic."
        )
    return (
        f"**Tuned mode, selected on a held-out split.** Per score and task, {what} over seeds of the task's "
        "main metric on the `selection` split, held out from the training data (`selection_fraction`, seeded by "
        "`selection_seed`, never trained on); the cells report that value's dev results, which played no part in "
        "the choice. The chosen value follows each cell; the appendix lists the whole grid."
    )


def _appendix(choices: list[Choice], keys: Sequence[str], select_on: str) -> str:
    """Every candidate value (combination) per row and task, its selection and dev results, the choice marked."""
    lines = [
        f"| score | task | {' | '.join(keys)} | {select_on} (main metric) | dev (main metric) | chosen |",
        "|---|---|" + "---|" * len(keys) + "---|---|---|",
    ]
    for choice in sorted(choices, key=lambda c: (c.task, c.row)):
        for candidate in choice.candidates:
            mark = "✓" if repr(candidate.values) == repr(choice.chosen_values) else ""
            if mark and choice.lower_is_better:
                mark += f" (lowest {choice.metric}: lower is better)"
            values = " | ".join(str(candidate.values.get(key)) for key in keys)
            lines.append(
                f"| {_label(choice.row)} | {choice.task} | {values} | "
                f"{format_cell(candidate.selection)} | {format_cell(candidate.dev)} | {mark} |"
            )
    return "\n".join(lines)


def _figure(kind: str, name: str) -> str:
    return f"**{_CAPTIONS[kind]}** ({name}):\n\n![{_CAPTIONS[kind]}](plots/{name})"


def _number(value: float | None, form: str = ".2f") -> str:
    return "–" if value is None else format(value, form)


def _diagnostics_text(diagnostics: Diagnostics) -> str:
    """The per-score table (reliability and churn), what it says about noise, and the Spearman matrix."""
    lines = [
        "| score | Jaccard across seeds | chance | p (vs chance) | seed pairs | Spearman across seeds | seed pairs | "
        "mean churn |",
        "|---|" + "---:|" * 7,
    ]
    for r in diagnostics.reliability:
        lines.append(
            f"| {_label(r.row)} | {_number(r.jaccard)} | {_number(r.chance)} | "
            f"{_number(r.p_value, '.3g')} | {r.pairs} | {_number(r.spearman)} | {r.spearman_pairs} | "
            f"{_number(r.churn, '.3f')} |"
        )
    verdict = "\n\n".join(_reliability_verdicts(diagnostics.reliability))
    rows, matrix, _ = diagnostics.spearman
    labels = [_label(row) for row in rows]
    spearman = ["| Spearman ρ | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(rows)]
    spearman += [
        f"| {label} | " + " | ".join("" if v is None else f"{v:+.2f}" for v in line) + " |"
        for label, line in zip(labels, matrix, strict=True)
    ]
    caption = (
        "**Spearman ρ of the final triplet scores** (off the diagonal: two scores on the same seed, mean over "
        "seeds; diagonal: one score across seeds; blank: no pair):"
    )
    return "\n\n".join(["\n".join(lines), verdict, caption, "\n".join(spearman)])


def _reliability_verdicts(reliability: Sequence[Any]) -> list[str]:
    """What the test against chance says, score by score: "above chance" only where p < 0.05."""
    tested = [r for r in reliability if r.p_value is not None]
    if not tested:
        return [
            "The test against chance needs at least 2 seeds of a score over the same triplets; no score has them here."
        ]
    above = [r for r in tested if r.above_chance]
    others = [r for r in tested if not r.above_chance]

    def listed(rows: Sequence[Any]) -> str:
        return ", ".join(f"{_label(r.row)} (p {r.p_value:.3g})" for r in rows)

    verdicts = []
    if above:
        verdicts.append(
            "Above chance across seeds (p < 0.05: its seeds keep more of the same triplets than random "
            f"kept sets of the same sizes would): {listed(above)}."
        )
    if others:
        fewest = min(r.pairs for r in others)
        caveat = f" (from as few as {fewest} seed pair(s); more seeds make the test firmer)" if fewest < 3 else ""
        verdicts.append(
            f"Not shown to be above chance (p ≥ 0.05), so possibly measuring noise on this task: {listed(others)}"
            f"{caveat}. What they keep cannot be told apart from what the seed alone would give, and neither can how "
            "much other scores agree with them."
        )
    return verdicts


def _diagnostics_json(diagnostics: Diagnostics) -> dict[str, Any]:
    fields = [field.name for field in dataclasses.fields(Reliability) if field.name != "row"]

    def matrix(pairwise) -> dict[str, Any]:
        rows, means, counts = pairwise
        return {"rows": [list(row) for row in rows], "mean": means, "n": counts}

    return {
        "reliability": [  # every field of Reliability after its row, in order, then above_chance
            {**_row_fields(r.row), **{name: getattr(r, name) for name in fields}, "above_chance": r.above_chance}
            for r in diagnostics.reliability
        ],
        "agreement": matrix(diagnostics.agreement),
        "spearman": matrix(diagnostics.spearman),
        "churn": [{**_row_fields(row), "curve": curve} for row, curve in diagnostics.churn.items()],
        "trajectories": [{**_row_fields(row), "types": kinds} for row, kinds in diagnostics.trajectories.items()],
    }


def build_report(
    root: str | Path,
    *,
    title: str = "AdaLoRA score study",
    notes: str = "",
    plot: bool = True,
    tune_key: str | None = None,
    select_on: str = "selection",
    reference: str = BASELINE,
) -> Path:
    """Read every run under ``root`` and write the report files there; returns the path of ``report.md``.

    With ``tune_key`` (e.g. ``learning_rate``, or several keys ``learning_rate,orth_reg_weight,lora_alpha`` whose best
    combination is chosen) the tables are in tuned mode (see ``adalora_scores.study.tuning``).
    ``reference``: the row (score or baseline name) the paired tests compare every other row with.
    """
    root = Path(root)
    study = dataclasses.replace(collect(root), reference=reference)
    notes = "\n\n".join(text for text in (run_problems(study), notes.strip()) if text)  # conflicts, takeovers
    if reference != BASELINE and reference not in {row[0] for row in study.rows}:
        known = ", ".join(sorted({row[0] for row in study.rows}))
        raise ValueError(f"--reference {reference}: no runs of that score or baseline here; the rows are {known}.")
    choices: list[Choice] = []
    keys = tuned_keys(tune_key) if tune_key is not None else ()
    if keys:
        study, choices = tune(study, keys, select_on)
        notes = (notes + "\n\n" + _tuning_note(keys, select_on)).strip()
    chosen = {(c.row, c.task): c for c in choices} if keys else None
    tasks = {r.task for r in study.records} | {v["task"] for v in (study.expected or {}).values()}
    note = _stats_note(study.reference)
    sections = [f"# {title}", notes.strip(), note] if notes.strip() else [f"# {title}", note]
    tuned = None if not keys else {"key": ",".join(keys), "keys": list(keys), "select_on": select_on}
    document: dict[str, Any] = {
        "runs": len(study.records),
        "failed": study.failed,
        "unreadable": study.unreadable,
        "tuned": tuned,
        "conflicts": [[r.name for r in group] for group in study.conflicts],
        "takeovers": study.takeovers,
    }
    other = generic_columns(study, tasks - {c.task for c in (*TABLE1, *TABLE2)})
    for key, heading, columns, averages in (
        ("table1", "Table 1: GLUE dev", TABLE1, True),
        ("table2", "Table 2: SQuAD v1.1 / v2.0 dev, EM and F1", TABLE2, False),
        ("tasks", "Other tasks: main metric per evaluation split", tuple(other), False),
    ):
        if not tasks & {c.task for c in columns} or not shown_columns(study, columns):
            continue
        shown = shown_columns(study, columns)
        averages = averages and len(shown) == len(columns)  # the paper's averages need all nine columns
        table, cells = _table(study, shown, averages, chosen)
        significance, tests = _significance(study, shown)
        settings, ran_with = _settings(study, {c.task for c in shown})
        sections += [f"## {heading}", table]
        if (reference := _paper_table(shown, averages)) is not None:
            sections += ["The study's values for these columns (Kim et al.):", reference]
        sections += ["### Settings each row ran with", settings]
        sections += [f"### Significance against `{study.reference}`", significance]
        if averages:
            sections.append(
                "All Ave. (paper convention): mean of the nine columns above, MNLI m and mm counted separately, as "
                "the study computes it. GLUE avg. (standard): mean over the eight tasks, one number per task, "
                "averaging MRPC and QQP accuracy and F1, STS-B Pearson and Spearman, and MNLI m and mm; WNLI "
                "excluded. Either is shown only when every task has a result."
            )
        atomic_write(root / f"{key}.csv", _csv(cells))
        document[key] = {"cells": cells, "significance": tests, "settings": ran_with}
    gap = gap_section(study, root, plot)
    if gap is not None:
        text, document["ladder"] = gap
        sections += ["## Where the gap goes", text]
    missing = sorted(set(study.expected or {}) - {r.name for r in study.records})
    if missing or study.failed or study.unreadable:
        sections.append("## Missing runs")
        sections.append(
            f"{len(missing)} of {len(study.expected or {})} runs of the sweep have no result; they are "
            "left out of every mean above, never filled in."
        )
        sections += [f"- `{name}`" + (" (failed: see error.txt)" if name in study.failed else "") for name in missing]
        sections += [f"- `{name}`: unreadable metrics.json or config.yaml" for name in study.unreadable]
    document["missing"] = missing
    if choices:
        sections += [f"## Appendix: the whole {_tuned_names(keys)} grid", _appendix(choices, keys, select_on)]
        document["choices"] = [
            {
                **_row_fields(c.row),
                "task": c.task,
                "chosen": c.chosen,
                "chosen_values": c.chosen_values,
                "candidates": [
                    {
                        "value": k.value,
                        "values": k.values,
                        "selection": k.selection.mean,
                        "selection_n": k.selection.n,
                        "dev": k.dev.mean,
                        "dev_n": k.dev.n,
                    }
                    for k in c.candidates
                ],
            }
            for c in choices
        ]
    if plot:
        written = plots.plot_all(study, [*TABLE1, *TABLE2, *other], root / "plots")
        document["plots"] = written
        sections.append("## Plots")
        for kind, names in written.items():
            sections += [_figure(kind, name) for name in names]
    diagnosed = [diagnose(study, task) for task in sorted(tasks) if triplet_rows(study, task)]
    if diagnosed:
        sections += ["## Score diagnostics", _DIAGNOSTICS_NOTE]
        document["diagnostics"] = {}
        for diagnostics in diagnosed:
            figures = plots.plot_diagnostics(diagnostics, root / "plots") if plot else {}
            sections += [f"### {diagnostics.task}", _diagnostics_text(diagnostics)]
            sections += [_figure(kind, name) for kind, name in figures.items()]
            document["diagnostics"][diagnostics.task] = {**_diagnostics_json(diagnostics), "plots": figures}
    atomic_write(root / "report.json", json.dumps(document, indent=2, default=str) + "\n")
    atomic_write(root / "report.md", "\n\n".join(sections) + "\n")
    return root / "report.md"
