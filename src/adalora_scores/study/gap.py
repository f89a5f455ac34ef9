"""Where the gap goes: each step of a ladder (:mod:`adalora_scores.study.ladder`) priced on the same seeds.

For each dev column (task, split, main metric), each row variant (the other grid values; none in tuned mode) and
each step, the row is compared with the row it steps from on the seeds both ran, as every paired comparison of the
report is (:mod:`adalora_scores.study.power`):

* Δ = mean over seeds of (row − the row it steps from), with its 95% interval d̄ ± t_{0.975, n−1} · s_d / √n;
* p of the two-sided paired t-test, and p_Holm, Holm-adjusted over the steps of the ladder in that column and
  variant (the family of one table);
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
from adalora_scores.study.power import ALPHA, POWER, SEEDS_CAP, Claim, claim, seeds_needed
from adalora_scores.study.results import Study, generic_columns, holm, paired_test

__all__ = ["Ladder", "PricedStep", "gap_section", "gap_sentence", "ladders", "price_steps"]


@dataclass(frozen=True)
class Ladder:
    """A sweep's ladder as its manifest records it: the steps in order and what each changes."""

    source: str
    steps: list[Step]
    changes: dict[str, str]


@dataclass(frozen=True)
class PricedStep:
    """One step in one column and row variant: the row against the row it steps from, on their shared seeds."""

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
        return self.p_holm is not None and self.p_holm < ALPHA


def ladders(specs: Sequence[dict[str, Any]]) -> list[Ladder]:
    """The distinct ladders among a folder's sweep specifications (``sweep.yaml``'s ``specs``): one ladder run
    again with other seeds or tasks into the same folder is one ladder."""
    found: list[Ladder] = []
    for spec in specs:
        entries = spec.get("ladder") or []
        steps = [Step(str(e["row"]), None if e.get("from") is None else str(e["from"])) for e in entries]
        if steps and all(ladder.steps != steps for ladder in found):
            changes = {str(e["row"]): str(e.get("change") or "") for e in entries}
            found.append(Ladder(str(spec.get("source", "")), steps, changes))
    return found


def price_steps(study: Study, ladder: Ladder, columns: Sequence[Column]) -> list[PricedStep]:
    """Every step with a parent, per column and row variant present for both rows; p Holm-adjusted over the steps
    of each (column, variant)."""
    variants: dict[str, list[str]] = {}
    for name, variant in study.rows:
        variants.setdefault(name, []).append(variant)
    priced: list[PricedStep] = []
    for column in columns:
        key = (column.task, column.split, column.metric)
        higher = higher_is_better(column.metric)
        family: dict[str, list[PricedStep]] = {}
        for step in ladder.steps:
            if step.parent is None:
                continue
            for variant in variants.get(step.row, []):
                ours, theirs = study.values((step.row, variant), *key), study.values((step.parent, variant), *key)
                if not ours or variant not in variants.get(step.parent, []):
                    continue
                differences = [ours[seed] - theirs[seed] for seed in sorted(set(ours) & set(theirs))]
                n, _, _, p = paired_test(ours, theirs)
                result = claim(differences)
                needed = None
                if result.std_difference and result.mean_difference:
                    needed = seeds_needed(abs(result.mean_difference), result.std_difference)
                values = list(ours.values())
                mean = statistics.fmean(values)
                std = statistics.stdev(values) if len(values) > 1 else None
                change = ladder.changes.get(step.row, "")
                entry = PricedStep(step, variant, column, change, mean, std, n, result, p, None, needed, higher)
                family.setdefault(variant, []).append(entry)
        for found in family.values():
            adjusted = holm([priced_step.p for priced_step in found])
            priced += [dataclasses.replace(step, p_holm=p) for step, p in zip(found, adjusted, strict=True)]
    return priced


def _detected_text(priced_step: PricedStep) -> str:
    result = priced_step.result
    worse = ((result.mean_difference or 0.0) < 0) == priced_step.higher_is_better
    return (
        f"`{priced_step.step.row}` ({priced_step.change}: Δ = {result.mean_difference:+.2f} "
        f"[{result.low:+.2f}, {result.high:+.2f}], {'a cost' if worse else 'a gain'}, p_Holm {priced_step.p_holm:.3g})"
    )


def gap_sentence(priced: Sequence[PricedStep]) -> str:
    """One sentence for one table (a column and variant): the steps whose difference was detected, and the smallest
    difference the others' seeds would have shown (their MDDs at 80% power)."""
    if not priced:
        return "No step of the ladder has paired seeds here."
    where = priced[0].column.label + (f" [{priced[0].variant}]" if priced[0].variant else "")
    detected = [step for step in priced if step.detected]
    others = [step for step in priced if not step.detected]
    if detected:
        head = f"On {where}, detected: " + "; ".join(_detected_text(step) for step in detected)
    elif any(step.p_holm is not None for step in priced):
        head = f"On {where}, no step's difference was detected (p_Holm ≥ {ALPHA:g} for every step)"
    else:
        head = f"On {where}, no step could be tested"
    if not others:
        return head + "."
    names = ", ".join(f"`{step.step.row}`" for step in others)
    limits = sorted(step.result.detectable for step in others if step.result.detectable is not None)
    if not limits:
        return head + f"; the power of the other steps ({names}) is n/a (fewer than 2 paired seeds or s_d = 0)."
    span = f"{limits[0]:.2f}" if limits[0] == limits[-1] else f"{limits[0]:.2f} to {limits[-1]:.2f}"
    seeds = "/".join(map(str, sorted({step.result.n for step in others})))
    return (
        head + f"; for the {'other ' if detected else ''}steps ({names}) only a difference of {span} points or more "
        f"would have been seen with {seeds} seeds ({POWER:.0%} power), so a smaller cost is not shown, not ruled out."
    )


def _seeds_text(priced_step: PricedStep) -> str:
    if priced_step.result.std_difference in (None, 0.0) or not priced_step.result.mean_difference:
        return "n/a"
    return f"> {SEEDS_CAP}" if priced_step.seeds_for_observed is None else str(priced_step.seeds_for_observed)


GAP_NOTE = (
    'Each row of a ladder changes one thing from the row it steps from ("what changes", read from the two rows\' '
    "configs). Δ: the mean paired difference (row − the row it steps from) over the seeds both ran, with its 95% "
    "interval; p: two-sided paired t-test; p_Holm: Holm-adjusted over the steps of one table; MDD: the smallest true "
    f"|Δ| that test finds with {POWER:.0%} power at the observed s_d; seeds for |Δ|: the seeds it would take to "
    "detect the observed |Δ| with that power (both take the observed s_d as the true one). In tuned mode every row "
    f"is at its own chosen value of the tuned keys. `*`: p_Holm < {ALPHA:g}."
)
UNTUNED_NOTE = (
    "This report is not in tuned mode, so each step is priced at each grid value (one table per value): that "
    "compares the rows at one learning rate, which may suit one row and not the other. `report --tuned learning_rate` "
    "prices each row at its own best value, chosen on the selection split."
)
CAPTION = "Where the gap goes: the first row, each step's paired Δ with its 95% interval (grey: not detected)"


def _number(value: float | None, form: str) -> str:
    return "n/a" if value is None else format(value, form)


def _table(priced: Sequence[PricedStep]) -> str:
    lines = [
        "| step | from | what changes | row mean ± std | n | Δ | 95% interval | p | p_Holm | MDD (80%) | "
        "seeds for \\|Δ\\| |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for step in priced:
        result = step.result
        interval = "n/a" if result.low is None else f"[{result.low:+.2f}, {result.high:+.2f}]"
        lines.append(
            f"| `{step.step.row}` | `{step.step.parent}` | {step.change} | {_number(step.mean, '.2f')} ± "
            f"{_number(step.std, '.2f')} | {step.n} | {_number(result.mean_difference, '+.2f')} | {interval} | "
            f"{_number(step.p, '.3f')} | {_number(step.p_holm, '.3f')}{' *' if step.detected else ''} | "
            f"{_number(result.detectable, '.2f')} | {_seeds_text(step)} |"
        )
    return "\n".join(lines)


def _waterfall(study: Study, ladder: Ladder, priced: Sequence[PricedStep], path: Path) -> bool:
    """The waterfall of one table along the ladder's chain (first row to last); False where a step of the chain has
    no paired result."""
    path_rows = chain(ladder.steps)
    by_row = {step.step.row: step for step in priced}
    steps = [by_row.get(row) for row in path_rows[1:]]
    if len(path_rows) < 2 or any(step is None or step.result.mean_difference is None for step in steps):
        return False
    column, variant = priced[0].column, priced[0].variant
    first = study.values((path_rows[0], variant), column.task, column.split, column.metric)
    bars = []
    for step in steps:
        delta = step.result.mean_difference
        low = delta if step.result.low is None else step.result.low
        high = delta if step.result.high is None else step.result.high
        bars.append((step.step.row, delta, low, high, step.detected))
    title = f"{column.label}: {path_rows[0]} → {path_rows[-1]}" + (f" [{variant}]" if variant else "")
    plots.plot_waterfall(
        (path_rows[0], statistics.fmean(first.values())), bars, (path_rows[-1], steps[-1].mean), title, path
    )
    return True


def gap_section(study: Study, root: Path, plot: bool) -> tuple[str, dict[str, Any]] | None:
    """The report's "Where the gap goes" section and its report.json entry, for every ladder among the folder's sweep
    specifications; None when there is none. Waterfalls go to ``root/plots/waterfall_<task>[_<split>].png`` (the
    ladder's file name first when the folder holds several ladders; the variant's name last when not tuned)."""
    from adalora_scores.study.sweep import read_manifest

    found = ladders(read_manifest(root)["specs"])
    if not found:
        return None
    texts, entries = [GAP_NOTE], []
    if any(variant for _, variant in study.rows):
        texts.append(UNTUNED_NOTE)
    for ladder in found:
        rows = {step.row for step in ladder.steps}
        tasks = {record.task for record in study.records if record.score in rows}
        for column in generic_columns(study, tasks, skip_splits=("selection",)):
            tables: dict[str, list[PricedStep]] = {}
            for priced_step in price_steps(study, ladder, [column]):
                tables.setdefault(priced_step.variant, []).append(priced_step)
            for variant, priced in tables.items():
                figure = _figure(study, ladder, priced, root, len(found) > 1) if plot else None
                heading = column.label + (f" [{variant}]" if variant else "")
                texts += [f"### {heading} (`{Path(ladder.source).name}`)", _table(priced), gap_sentence(priced)]
                texts += [f"![{CAPTION}](plots/{figure})"] if figure else []
                entries.append(
                    {
                        "source": ladder.source,
                        "column": column.label,
                        "task": column.task,
                        "split": column.split,
                        "metric": column.metric,
                        "variant": variant,
                        "figure": figure,
                        "sentence": gap_sentence(priced),
                        "chain": chain(ladder.steps),
                        "steps": [_step_json(step) for step in priced],
                    }
                )
    return "\n\n".join(texts), {"ladders": entries}


def _figure(study: Study, ladder: Ladder, priced: Sequence[PricedStep], root: Path, several: bool) -> str | None:
    column, variant = priced[0].column, priced[0].variant
    parts = ["waterfall", *([Path(ladder.source).stem] if several else []), column.task]
    parts += [] if column.split == "dev" else [column.split]
    parts += ["".join(ch if ch.isalnum() or ch in ".-=" else "-" for ch in variant)] if variant else []
    name = "_".join(parts) + ".png"
    (root / "plots").mkdir(parents=True, exist_ok=True)
    return name if _waterfall(study, ladder, priced, root / "plots" / name) else None


def _step_json(priced_step: PricedStep) -> dict[str, Any]:
    result = priced_step.result
    return {
        "row": priced_step.step.row,
        "from": priced_step.step.parent,
        "variant": priced_step.variant,
        "change": priced_step.change,
        "mean": priced_step.mean,
        "std": priced_step.std,
        "n": priced_step.n,
        "mean_difference": result.mean_difference,
        "low": result.low,
        "high": result.high,
        "std_difference": result.std_difference,
        "p": priced_step.p,
        "p_holm": priced_step.p_holm,
        "detected": priced_step.detected,
        "detectable_difference": result.detectable,
        "seeds_for_observed": priced_step.seeds_for_observed,
        "power_not_available": result.why_not,
    }
