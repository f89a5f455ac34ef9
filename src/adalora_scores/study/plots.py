"""Report figures (matplotlib, PNG): each task's metric per score, where each score spends its rank at the end, and
the score diagnostics (:mod:`adalora_scores.study.diagnostics`): agreement of the kept triplets, churn and rank
trajectories over training."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from adalora_scores.engine.module_types import matrix_position, ordered_types  # noqa: E402
from adalora_scores.runs.files import read_rank_pattern  # noqa: E402
from adalora_scores.study.diagnostics import Diagnostics  # noqa: E402
from adalora_scores.study.results import RunRecord, Study  # noqa: E402

__all__ = ["plot_all", "plot_diagnostics", "plot_waterfall"]


def _rank_grid(records: list[RunRecord]) -> tuple[list[str], list[list[float]]] | None:
    """The module types present, and the mean final rank over the runs as layers × types."""
    sums: dict[tuple[int, str], list[int]] = {}
    for record in records:
        for name, entry in (read_rank_pattern(record.folder) or {}).items():
            if (position := matrix_position(name)) is not None:
                sums.setdefault(position, []).append(entry["rank"])
    if not sums:
        return None
    kinds = ordered_types({kind for _, kind in sums})
    layers = max(layer for layer, _ in sums) + 1
    return kinds, [[statistics.fmean(sums.get((layer, kind), [0])) for kind in kinds] for layer in range(layers)]


def _label(row: tuple[str, str]) -> str:
    return row[0] if not row[1] else f"{row[0]} [{row[1]}]"


def _save(figure: plt.Figure, path: Path) -> None:
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def plot_ranks(study: Study, task: str, path: Path) -> bool:
    grids = [(row, _rank_grid([r for r in study.records if r.row == row and r.task == task])) for row in study.rows]
    grids = [(row, grid) for row, grid in grids if grid]
    if not grids:
        return False
    top = max(max(max(line) for line in grid) for _, (_, grid) in grids) or 1
    size = (2.2 * len(grids) + 1, 0.3 * len(grids[0][1][1]) + 2)
    figure, axes = plt.subplots(1, len(grids), figsize=size, squeeze=False)
    for axis, (row, (kinds, grid)) in zip(axes[0], grids, strict=True):
        image = axis.imshow(grid, vmin=0, vmax=top, cmap="viridis", aspect="auto")
        axis.set_title(_label(row), fontsize=9)
        axis.set_xticks(range(len(kinds)), kinds)
        axis.set_yticks(range(len(grid)))
        axis.set_xlabel("module")
    axes[0][0].set_ylabel("layer")
    figure.colorbar(image, ax=axes[0].tolist(), label="final rank (mean over seeds)")
    figure.suptitle(f"{task}: where each score keeps its rank")
    _save(figure, path)
    return True


def plot_agreement(diagnostics: Diagnostics, path: Path) -> bool:
    """The Jaccard matrix of :func:`~adalora_scores.study.diagnostics.agreement_matrix`, its diagonal outlined."""
    rows, matrix, _ = diagnostics.agreement
    if all(v is None for line in matrix for v in line):
        return False
    figure, axis = plt.subplots(figsize=(1.1 * len(rows) + 2.5, 1.0 * len(rows) + 1.8))
    values = [[float("nan") if v is None else v for v in line] for line in matrix]
    image = axis.imshow(values, vmin=0, vmax=1, cmap="magma")
    labels = [_label(r) for r in rows]
    axis.set_xticks(range(len(rows)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(rows)), labels)
    for i, line in enumerate(matrix):
        axis.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="tab:cyan", linewidth=2))
        for j, v in enumerate(line):
            if v is not None:
                axis.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black")
    figure.colorbar(image, label="Jaccard overlap of kept triplets")
    title = f"{diagnostics.task}: agreement of the final kept triplets\n"
    axis.set_title(title + "diagonal (outlined): one score across seeds; elsewhere: two scores, same seed", fontsize=9)
    _save(figure, path)
    return True


def plot_churn(diagnostics: Diagnostics, path: Path) -> bool:
    """Churn per allocation step, one line per row (mean over seeds)."""
    if not diagnostics.churn:
        return False
    figure, axis = plt.subplots(figsize=(6.5, 3.8))
    for row, curve in diagnostics.churn.items():
        axis.plot([s for s, _ in curve], [v for _, v in curve], marker=".", label=_label(row), alpha=0.85)
    axis.set_xlabel("optimizer step (allocation)")
    axis.set_ylabel("churn |K_t \\ K_t-1| / |K_t|")
    axis.set_ylim(bottom=0)
    title = f"{diagnostics.task}: share of the kept set that is new at each allocation (mean over seeds)"
    axis.set_title(title, fontsize=9)
    axis.legend(fontsize=7, ncol=2)
    _save(figure, path)
    return True


def plot_trajectories(diagnostics: Diagnostics, path: Path) -> bool:
    """One panel per row: the mean kept rank per matrix of each module type over training (mean over seeds)."""
    panels = list(diagnostics.trajectories.items())
    if not panels:
        return False
    columns = min(5, len(panels))
    lines = -(-len(panels) // columns)
    size = (2.6 * columns + 1, 2.2 * lines + 0.8)
    figure, axes = plt.subplots(lines, columns, figsize=size, squeeze=False, sharex=True, sharey=True)
    top = max(v for _, kinds in panels for curve in kinds.values() for _, v in curve)
    for axis, (row, kinds) in zip(axes.flat, panels, strict=False):
        for kind, curve in kinds.items():
            axis.plot([s for s, _ in curve], [v for _, v in curve], drawstyle="steps-post", label=kind)
        axis.set_title(_label(row), fontsize=8)
        axis.set_ylim(0, top * 1.05)
    for axis in list(axes.flat)[len(panels) :]:
        axis.axis("off")
    axes[0][0].legend(fontsize=7)
    figure.supxlabel("optimizer step")
    figure.supylabel("kept rank per matrix (mean)")
    figure.suptitle(f"{diagnostics.task}: kept rank per module type over training (mean over seeds)")
    _save(figure, path)
    return True


def plot_metrics(study: Study, columns, path: Path) -> bool:
    shown = [c for c in columns if any(study.cell(row, c).n for row in study.rows)]
    if not shown:
        return False
    rows = study.rows
    width = 0.8 / len(rows)
    figure, axis = plt.subplots(figsize=(1.4 * len(shown) + 2, 3.8))
    for k, row in enumerate(rows):
        cells = [study.cell(row, c) for c in shown]
        positions = [i + (k - (len(rows) - 1) / 2) * width for i in range(len(shown))]
        heights, errors = [c.mean or 0 for c in cells], [c.std or 0 for c in cells]
        axis.bar(positions, heights, width, yerr=errors, capsize=3, label=_label(row))
    axis.set_xticks(range(len(shown)), [c.label for c in shown], rotation=30, ha="right")
    axis.set_ylabel("dev metric (%), mean ± std over seeds")
    means = [study.cell(row, c).mean for row in rows for c in shown if study.cell(row, c).mean is not None]
    axis.set_ylim(max(0.0, min(means) - 10), min(100.0, max(means) + 5))
    axis.legend(fontsize=8)
    _save(figure, path)
    return True


WaterfallStep = tuple[str, float, float, float, bool]
"""(label, Δ, 95% low, 95% high, detected)."""


def plot_waterfall(
    start: tuple[str, float], steps: list[WaterfallStep], end: tuple[str, float], title: str, path: Path
) -> None:
    """A waterfall: the first row's mean, each step's Δ (label, Δ, 95% low, 95% high, detected) as a bar floating
    from the running total with its interval, then the last row's mean. Detected steps are coloured (green a gain,
    red a cost), the others grey; the axis is zoomed to the bars' range."""
    figure, axis = plt.subplots(figsize=(1.1 * (len(steps) + 2) + 1.5, 4.2))
    axis.bar(0, start[1], color="#4c72b0", width=0.6)
    total, points = start[1], [start[1], end[1]]
    for k, (_, delta, low, high, detected) in enumerate(steps, start=1):
        colour = ("#55a868" if delta >= 0 else "#c44e52") if detected else "#b0b0b0"
        axis.bar(k, delta, bottom=total, color=colour, width=0.6, edgecolor="black" if detected else "none")
        axis.errorbar(k, total + delta, yerr=[[delta - low], [high - delta]], color="black", capsize=3, lw=1)
        axis.plot([k - 0.7, k - 0.3], [total, total], color="grey", lw=0.8)
        points += [total + low, total + high]
        total += delta
    axis.bar(len(steps) + 1, end[1], color="#4c72b0", width=0.6)
    labels = [start[0], *(label for label, *_ in steps), end[0]]
    axis.set_xticks(range(len(labels)), labels, rotation=30, ha="right", fontsize=8)
    span = (max(points) - min(points)) or 1.0
    axis.set_ylim(min(points) - 0.2 * span, max(points) + 0.2 * span)
    axis.set_ylabel("dev metric; steps: Δ with 95% interval")
    axis.set_title(title, fontsize=10)
    _save(figure, path)


def plot_all(study: Study, columns, folder: Path) -> dict[str, list[str]]:
    """The metric bars and each task's rank heatmaps into ``folder``; returns kind → file names written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {"metrics": [], "ranks": []}
    if plot_metrics(study, columns, folder / "metrics.png"):
        written["metrics"].append("metrics.png")
    for task in sorted({r.task for r in study.records}):
        if plot_ranks(study, task, folder / f"ranks_{task}.png"):
            written["ranks"].append(f"ranks_{task}.png")
    return written


def plot_diagnostics(diagnostics: Diagnostics, folder: Path) -> dict[str, str]:
    """A task's agreement, churn and rank-trajectory figures into ``folder``; returns kind → file name written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for kind, plot in (("agreement", plot_agreement), ("churn", plot_churn), ("trajectories", plot_trajectories)):
        name = f"{kind}_{diagnostics.task}.png"
        if plot(diagnostics, folder / name):
            written[kind] = name
    return written
