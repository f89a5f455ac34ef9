"""Where the gap goes: each step of a ladder (:mod:`adalora_scores.study.ladder`) priced on the same seeds.

For each dev column (task, split, main metric) and each step, the row is compared with the row it steps from on the
seeds both ran, as every paired comparison of the report is (:mod:`adalora_scores.study.power`):

* Δ = mean over seeds of (row − the row it steps from), with its 95% interval d̄ ± t_{0.975, n−1} · s_d / √n;
* p of the two-sided paired t-test, and p_Holm, Holm-adjusted over the steps of the ladder in that column;
* MDD, the smallest true |Δ| the test finds with 80% power at the observed s_d, and the seeds needed to detect the
  observed |Δ| at 80% power.

Along the chain from the first row to the last (:func:`~adalora_scores.study.ladder.chain`) the steps' Δ add up to
the last row's mean minus the first's when every row ran every seed; the waterfall draws them in that order.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adalora_scores.metrics.direction import higher_is_better
from adalora_scores.study import plots
from adalora_scores.study.ladder import Step, chain
from adalora_scores.study.paper import Column
from adalora_scores.study.power import POWER, SEEDS_CAP, Claim, claim, seeds_needed
from adalora_scores.study.results import Study, holm, paired_test

__all__ = ["Ladder", "PricedStep", "gap_section", "gap_sentence", "ladders", "price_steps"]


@dataclass(frozen=True)
class Ladder:
    """A sweep's ladder as its manifest records it: the steps in order and what each changes."""

    source: str
    steps: list[Step]
    changes: dict[str, str]


@dataclass(frozen=True)
class PricedStep:
    step: Step
    variant: str
    column: Column
    change: str
    mean: float | None
    """The row's own mean over its seeds."""
    std: float | None
    n: int
    """Seeds the row and the row it steps from both ran."""
    result: Claim
    p: float | None
    p_holm: float | None
    seeds_for_observed: int | None
    """Seeds to detect the observed |Δ| at 80% power (None when n/a or beyond the cap)."""
    higher_is_better: bool = True

    @property
    def detected(self) -> bool:
        return self.p_holm is not None and self.p_holm < 0.05


def ladders(specs: Sequence[dict[str, Any]]) -> list[Ladder]:
    """The ladders among a folder's sweep specifications (``sweep.yaml``'s ``specs``)."""
    found = []
    for spec in specs:
        entries = spec.get("ladder") or []
        if entries:
            steps = [Step(str(e["row"]), None if e.get("from") is None else str(e["from"])) for e in entries]
            changes = {str(e["row"]): str(e.get("change") or "") for e in entries}
            found.append(Ladder(str(spec.get("source", "")), steps, changes))
    return found


def price_steps(study: Study, ladder: Ladder, columns: Sequence[Column]) -> list[PricedStep]:
    """Every step with a parent, per column and row variant present for both rows, p Holm-adjusted over the steps
    of each column."""
    variants = {}
    for name, variant in study.rows:
        variants.setdefault(name, []).append(variant)
    priced: list[PricedStep] = []
    for column in columns:
        key = (column.task, column.split, column.metric)
        found = []
        for step in ladder.steps:
            if step.parent is None:
                continue
            for variant in variants.get(step.row, []):
                if variant not in variants.get(step.parent, []):
                    continue
                ours, theirs = study.values((step.row, variant), *key), study.values((step.parent, variant), *key)
                if not ours:
                    continue
                seeds = sorted(set(ours) & set(theirs))
                differences = [ours[s] - theirs[s] for s in seeds]
                n, _, _, p = paired_test(ours, theirs)
                result = claim(differences)
                needed = None
                if result.std_difference and result.mean_difference:
                    needed = seeds_needed(abs(result.mean_difference), result.std_difference)
                values = list(ours.values())
                std = statistics.stdev(values) if len(values) > 1 else None
                found.append(
                    PricedStep(
                        step,
                        variant,
                        column,
                        ladder.changes.get(step.row, ""),
                        statistics.fmean(values),
                        std,
                        n,
                        result,
                        p,
                        None,
                        needed,
                        higher_is_better(column.metric),
                    )
                )
        adjusted = holm([priced_step.p for priced_step in found])
        priced += [dataclasses.replace(s, p_holm=a) for s, a in zip(found, adjusted, strict=True)]
    return priced


def gap_sentence(priced: Sequence[PricedStep]) -> str:
    """One sentence for one column: the steps whose cost (or gain) was detected, and how small a difference the
    others could have hidden (their MDDs at 80% power)."""
    if not priced:
        return "No step of the ladder has paired seeds here."
    column = priced[0].column.label
    detected = [s for s in priced if s.detected]
    hidden = [s for s in priced if not s.detected]
    parts = []
    if detected:
        texts = []
        for s in detected:
            worse = ((s.result.mean_difference or 0.0) < 0) == s.higher_is_better
            texts.append(
                f"`{s.step.row}` ({s.change}: Δ = {s.result.mean_difference:+.2f} "
                f"[{s.result.low:+.2f}, {s.result.high:+.2f}], {'a cost' if worse else 'a gain'}, "
                f"p_Holm {s.p_holm:.3g})"
            )
        parts.append(f"On {column}, detected: " + "; ".join(texts) + ".")
    elif any(s.p_holm is not None for s in priced):
        parts.append(f"On {column}, no step's difference was detected (p_Holm ≥ 0.05 for every step).")
    else:
        parts.append(f"On {column}, no step could be tested.")
    if hidden:
        limits = [s.result.detectable for s in hidden if s.result.detectable is not None]
        seeds = sorted({s.result.n for s in hidden})
        names = ", ".join(f"`{s.step.row}`" for s in hidden)
        if limits:
            parts.append(
                f"The other steps ({names}) could each have hidden a difference of up to {min(limits):.2f} to "
                f"{max(limits):.2f} points with {'/'.join(map(str, seeds))} seeds ({POWER:.0%} power); a step's "
                "undetected cost is 'not shown', not zero."
            )
        else:
            parts.append(f"The power of the other steps ({names}) is n/a (fewer than 2 paired seeds or s_d = 0).")
    return " ".join(parts)


def seeds_text(step: PricedStep) -> str:
    if step.result.std_difference in (None, 0.0) or not step.result.mean_difference:
        return "n/a"
    return f"> {SEEDS_CAP}" if step.seeds_for_observed is None else str(step.seeds_for_observed)


GAP_NOTE = (
    'Each row of a ladder changes one thing from the row it steps from ("what changes", read from the two rows\' '
    "configs). Δ: the mean paired difference (row − the row it steps from) over the seeds both ran, with its 95% "
    "interval; p: two-sided paired t-test; p_Holm: Holm-adjusted over the steps of the column; MDD: the smallest true "
    f"|Δ| that test finds with {POWER:.0%} power at the observed s_d; seeds for |Δ|: the seeds it would take to "
    "detect the observed |Δ| with that power (both take the observed s_d as the true one). In tuned mode every row "
    "is at its own chosen value of the tuned keys. `*`: p_Holm < 0.05."
)


def _label(row: str, variant: str) -> str:
    return f"`{row}`" + (f" [{variant}]" if variant else "")


def _number(value: float | None, form: str) -> str:
    return "n/a" if value is None else format(value, form)


def _table(priced: Sequence[PricedStep]) -> str:
    lines = [
        "| step | from | what changes | row mean ± std | n | Δ | 95% interval | p | p_Holm | MDD (80%) | "
        "seeds for \\|Δ\\| |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in priced:
        star = " *" if s.detected else ""
        interval = "n/a" if s.result.low is None else f"[{s.result.low:+.2f}, {s.result.high:+.2f}]"
        lines.append(
            f"| {_label(s.step.row, s.variant)} | `{s.step.parent}` | {s.change} | "
            f"{_number(s.mean, '.2f')} ± {_number(s.std, '.2f')} | {s.n} | "
            f"{_number(s.result.mean_difference, '+.2f')} | {interval} | {_number(s.p, '.3f')} | "
            f"{_number(s.p_holm, '.3f')}{star} | {_number(s.result.detectable, '.2f')} | {seeds_text(s)} |"
        )
    return "\n".join(lines)


def _waterfall(study: Study, ladder: Ladder, priced: Sequence[PricedStep], path: Path) -> bool:
    """The waterfall of one column along the ladder's chain (first row to last), for the first variant that has
    every step of it."""
    path_rows = chain(ladder.steps)
    if len(path_rows) < 2:
        return False
    by_step = {(s.step.row, s.variant): s for s in priced}
    for variant in dict.fromkeys(s.variant for s in priced):
        steps = [by_step.get((row, variant)) for row in path_rows[1:]]
        if any(s is None or s.result.mean_difference is None for s in steps):
            continue
        column = steps[0].column
        key = (column.task, column.split, column.metric)
        first = study.values((path_rows[0], variant), *key)
        if not first:
            continue
        bars = [
            (
                s.step.row,
                s.result.mean_difference,
                s.result.low if s.result.low is not None else s.result.mean_difference,
                s.result.high if s.result.high is not None else s.result.mean_difference,
                s.detected,
            )
            for s in steps
        ]
        title = f"{column.label}: {path_rows[0]} → {path_rows[-1]}" + (f" [{variant}]" if variant else "")
        plots.plot_waterfall(
            (path_rows[0], statistics.fmean(first.values())), bars, (path_rows[-1], steps[-1].mean), title, path
        )
        return True
    return False


def gap_section(study: Study, root: Path, plot: bool) -> tuple[str, dict[str, Any]] | None:
    """The report's "Where the gap goes" section and its report.json entry, for every ladder among the folder's sweep
    specifications; None when there is none. Waterfalls go to ``root/plots/waterfall_<task>[_<split>].png``."""
    from adalora_scores.study.sweep import read_manifest

    found = ladders(read_manifest(root)["specs"])
    if not found:
        return None
    texts, entries = [GAP_NOTE], []
    for ladder in found:
        rows = {step.row for step in ladder.steps}
        tasks = {r.task for r in study.records if r.score in rows}
        for column in _dev_columns(study, tasks):
            priced = price_steps(study, ladder, [column])
            if not priced:
                continue
            figure = None
            if plot:
                (root / "plots").mkdir(parents=True, exist_ok=True)
                name = f"waterfall_{column.task}" + ("" if column.split == "dev" else f"_{column.split}") + ".png"
                figure = name if _waterfall(study, ladder, priced, root / "plots" / name) else None
            texts += [f"### {column.label} (`{Path(ladder.source).name}`)", _table(priced), gap_sentence(priced)]
            if figure:
                texts.append(f"![{_CAPTION}](plots/{figure})")
            entries.append(
                {
                    "source": ladder.source,
                    "column": column.label,
                    "task": column.task,
                    "split": column.split,
                    "metric": column.metric,
                    "figure": figure,
                    "sentence": gap_sentence(priced),
                    "chain": chain(ladder.steps),
                    "steps": [_step_json(s) for s in priced],
                }
            )
    return "\n\n".join(texts), {"ladders": entries}


_CAPTION = "Where the gap goes: the first row, each step's paired Δ with its 95% interval (grey: not detected)"


def _dev_columns(study: Study, tasks: set[str]) -> list[Column]:
    """One column per (task, dev split) with the task's main metric (the selection split left out)."""
    columns: list[Column] = []
    for record in sorted(study.records, key=lambda r: r.task):
        metric = record.metrics.get("main_metric")
        if record.task not in tasks or metric is None:
            continue
        for split, values in record.metrics.get("eval", {}).items():
            column = Column(
                f"{record.task} {metric}" if split == "dev" else f"{record.task} {split} {metric}",
                record.task,
                split,
                metric,
            )
            if split != "selection" and metric in values and column not in columns:
                columns.append(column)
    return columns


def _step_json(s: PricedStep) -> dict[str, Any]:
    return {
        "row": s.step.row,
        "from": s.step.parent,
        "variant": s.variant,
        "change": s.change,
        "mean": s.mean,
        "std": s.std,
        "n": s.n,
        "mean_difference": s.result.mean_difference,
        "low": s.result.low,
        "high": s.result.high,
        "std_difference": s.result.std_difference,
        "p": s.p,
        "p_holm": s.p_holm,
        "detected": s.detected,
        "detectable_difference": s.result.detectable,
        "seeds_for_observed": s.seeds_for_observed,
        "power_not_available": s.result.why_not,
    }
