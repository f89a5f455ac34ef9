"""Report figures (matplotlib, PNG): where each score spends its budget, the budget schedule, how much the scores
agree on what to keep, and each task's metric per score."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from adalora_scores.module_types import matrix_position, ordered_types  # noqa: E402
from adalora_scores.run_files import LOG_FILE, RANK_PATTERN_FILE  # noqa: E402
from adalora_scores.study.results import RunRecord, Study  # noqa: E402

__all__ = ["agreement", "plot_all"]


def _pattern(record: RunRecord) -> dict[str, dict] | None:
    path = record.folder / RANK_PATTERN_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def _rank_grid(records: list[RunRecord]) -> tuple[list[str], list[list[float]]] | None:
    """The module types present, and the mean final rank over the runs as layers × types."""
    sums: dict[tuple[int, str], list[int]] = {}
    for record in records:
        for name, entry in (_pattern(record) or {}).items():
            if (position := matrix_position(name)) is not None:
                sums.setdefault(position, []).append(entry["rank"])
    if not sums:
        return None
    kinds = ordered_types({kind for _, kind in sums})
    layers = max(layer for layer, _ in sums) + 1
    return kinds, [[statistics.fmean(sums.get((layer, kind), [0])) for kind in kinds] for layer in range(layers)]


def agreement(first: RunRecord, second: RunRecord) -> float | None:
    """Jaccard overlap |A ∩ B| / |A ∪ B| of the triplets two runs keep at the end."""
    a, b = _pattern(first), _pattern(second)
    if not a or not b or set(a) != set(b):
        return None
    both = either = 0
    for name in a:
        for x, y in zip(a[name]["mask"], b[name]["mask"], strict=True):
            both += x and y
            either += x or y
    return both / either if either else 1.0


def _label(row: tuple[str, str]) -> str:
    return row[0] if not row[1] else f"{row[0]} [{row[1]}]"


def plot_ranks(study: Study, task: str, path: Path) -> bool:
    grids = [(row, _rank_grid([r for r in study.records if r.row == row and r.task == task])) for row in study.rows]
    grids = [(row, grid) for row, grid in grids if grid]
    if not grids:
        return False
    top = max(max(max(line) for line in grid) for _, (_, grid) in grids) or 1
    figure, axes = plt.subplots(1, len(grids), figsize=(2.2 * len(grids) + 1, 0.3 * len(grids[0][1][1]) + 2),
                                squeeze=False)  # fmt: skip
    for axis, (row, (kinds, grid)) in zip(axes[0], grids, strict=True):
        image = axis.imshow(grid, vmin=0, vmax=top, cmap="viridis", aspect="auto")
        axis.set_title(_label(row), fontsize=9)
        axis.set_xticks(range(len(kinds)), kinds)
        axis.set_yticks(range(len(grid)))
        axis.set_xlabel("module")
    axes[0][0].set_ylabel("layer")
    figure.colorbar(image, ax=axes[0].tolist(), label="final rank (mean over seeds)")
    figure.suptitle(f"{task}: where each score keeps its rank")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return True


def plot_budget(study: Study, task: str, path: Path) -> bool:
    figure, axis = plt.subplots(figsize=(6, 3.5))
    drawn = False
    for row in study.rows:
        runs = sorted((r for r in study.records if r.row == row and r.task == task), key=lambda r: r.seed)
        log = runs[0].folder / LOG_FILE if runs else None
        if log is None or not log.is_file():
            continue
        entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        axis.plot([e["step"] for e in entries], [e["budget"] for e in entries], label=_label(row), alpha=0.8)
        drawn = True
    if drawn:
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("total rank budget b(t)")
        axis.set_title(f"{task}: rank budget over training")
        axis.legend(fontsize=8)
        figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return drawn


def agreement_matrix(study: Study, task: str) -> tuple[list[tuple[str, str]], list[list[float | None]]]:
    """Mean Jaccard overlap of final patterns between rows, over seeds both rows ran."""
    rows = study.rows
    by_seed = {row: {r.seed: r for r in study.records if r.row == row and r.task == task} for row in rows}
    matrix = []
    for a in rows:
        line = []
        for b in rows:
            values = [agreement(by_seed[a][s], by_seed[b][s]) for s in set(by_seed[a]) & set(by_seed[b])]
            values = [v for v in values if v is not None]
            line.append(statistics.fmean(values) if values else None)
        matrix.append(line)
    return rows, matrix


def plot_agreement(study: Study, task: str, path: Path) -> bool:
    rows, matrix = agreement_matrix(study, task)
    if len(rows) < 2 or all(v is None for line in matrix for v in line):
        return False
    figure, axis = plt.subplots(figsize=(1.1 * len(rows) + 2, 1.0 * len(rows) + 1.5))
    values = [[float("nan") if v is None else v for v in line] for line in matrix]
    image = axis.imshow(values, vmin=0, vmax=1, cmap="magma")
    labels = [_label(r) for r in rows]
    axis.set_xticks(range(len(rows)), labels, rotation=45, ha="right")
    axis.set_yticks(range(len(rows)), labels)
    for i, line in enumerate(matrix):
        for j, v in enumerate(line):
            if v is not None:
                axis.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black")
    figure.colorbar(image, label="Jaccard overlap of kept triplets")
    axis.set_title(f"{task}: agreement of final rank patterns")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
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
        axis.bar(positions, [c.mean or 0 for c in cells], width, yerr=[c.std or 0 for c in cells], capsize=3,
                 label=_label(row))  # fmt: skip
    axis.set_xticks(range(len(shown)), [c.label for c in shown], rotation=30, ha="right")
    axis.set_ylabel("dev metric (%), mean ± std over seeds")
    means = [study.cell(row, c).mean for row in rows for c in shown if study.cell(row, c).mean is not None]
    axis.set_ylim(max(0.0, min(means) - 10), min(100.0, max(means) + 5))
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return True


def plot_all(study: Study, columns, folder: Path) -> dict[str, list[str]]:
    """Every figure into ``folder``; returns kind → file names written."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {"ranks": [], "budget": [], "agreement": [], "metrics": []}
    for task in sorted({r.task for r in study.records}):
        for kind, plot in (("ranks", plot_ranks), ("budget", plot_budget), ("agreement", plot_agreement)):
            if plot(study, task, folder / f"{kind}_{task}.png"):
                written[kind].append(f"{kind}_{task}.png")
    if plot_metrics(study, columns, folder / "metrics.png"):
        written["metrics"].append("metrics.png")
    return written
