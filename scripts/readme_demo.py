"""Rewrite the README's demo excerpt and its figure from a finished demo folder.

    python scripts/readme_demo.py demo-results --machine "2 CPU cores (x86-64 VM), torch 2.13.0+cpu"

The excerpt goes between the README's ``<!-- demo-excerpt: begin`` and ``<!-- demo-excerpt: end -->`` lines: a table
of the demo's ``report.md`` trimmed to :data:`ROWS` and :data:`COLUMNS` (joined from the report's result table, its
significance table and its score diagnostics), with the date of the runs, the machine and the command. The figure,
``docs/images/demo-ranks.png``, is the final rank of every layer × module type of the same rows (mean over seeds),
read from each run's ``rank_pattern.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FIGURE = ROOT / "docs" / "images" / "demo-ranks.png"
BEGIN, END = "<!-- demo-excerpt: begin", "<!-- demo-excerpt: end -->"
ROWS = ("sensitivity", "movement", "fisher", "fisher_per_example", "gsnr_per_example", "random", "svd_lora_r4")
"""The rows the excerpt keeps: AdaLoRA's own score, the study's other three, the mini-batch Fisher, the controls."""
COLUMNS = {
    "score": ("result", "{score}"),
    "dev accuracy, mean ± std (seeds)": ("result", "{contrast_sentiment accuracy}"),
    "Δ vs `sensitivity` [95% interval]": ("significance", "{mean Δ vs sensitivity} {95% interval}"),
    "smallest Δ the seeds could detect": ("significance", "{MDD (80%)}"),
    "kept triplets alike across seeds (chance)": ("reliability", "{Jaccard across seeds} ({chance})"),
}
"""Excerpt column → (the report table it comes from, its cell made of that table's columns). The Jaccard overlap of
the two seeds' kept triplets shows whether a score keeps what the seed decides (at chance) or something stable."""
FIGURE_ROWS = ("sensitivity", "fisher", "gsnr_per_example", "random")


def tables(report: str) -> dict[str, list[dict[str, str]]]:
    """The report's result table (the first table after its title), its first significance table and its first
    reliability table (score diagnostics), each as rows of header → cell."""
    found: dict[str, list[dict[str, str]]] = {}
    heading, lines, i = "", report.splitlines(), 0
    while i < len(lines):
        if lines[i].startswith("#"):
            heading = lines[i]
        if not lines[i].startswith("|"):
            i += 1
            continue
        block = []
        while i < len(lines) and lines[i].startswith("|"):
            block.append([cell.strip() for cell in lines[i].strip().strip("|").split("|")])
            i += 1
        kind = (
            "significance"
            if heading.startswith("### Significance")
            else "reliability"
            if "Jaccard across seeds" in block[0]
            else "result"
        )
        found.setdefault(kind, [dict(zip(block[0], row, strict=False)) for row in block[2:]])
    missing = {"result", "significance", "reliability"} - set(found)
    if missing:
        raise SystemExit(f"report.md has no {', '.join(sorted(missing))} table: is it a finished demo's report?")
    return found


def excerpt_table(report: str) -> str:
    """The trimmed table, as Markdown: the rows of :data:`ROWS` the report has, the cells of :data:`COLUMNS` ("–"
    where the report has none, as for the reference row of the paired tests)."""
    by_score = {kind: {row["score"].strip("`"): row for row in rows} for kind, rows in tables(report).items()}
    lines = ["| " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * (len(COLUMNS) - 1)]
    for name in (name for name in ROWS if name in by_score["result"]):
        cells = []
        for kind, form in COLUMNS.values():
            row = by_score[kind].get(name)
            try:
                cell = "–" if row is None else form.format_map(row)
                cells.append("–" if set(cell) <= set("–() ") else cell)  # "– (–)": nothing to show
            except KeyError as missing:
                raise SystemExit(f"report.md's {kind} table has no column {missing}; update COLUMNS.") from None
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_folders(demo: Path) -> dict[str, list[Path]]:
    """Finished runs (``metrics.json``) by their row (``grid.json``'s ``row``)."""
    runs: dict[str, list[Path]] = {}
    for grid in sorted(demo.glob("*/grid.json")):
        if (grid.parent / "metrics.json").is_file():
            runs.setdefault(json.loads(grid.read_text())["row"], []).append(grid.parent)
    return runs


def draw_figure(demo: Path, path: Path) -> None:
    """The final rank per layer × module type of :data:`FIGURE_ROWS`, mean over seeds, one panel per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from adalora_scores.engine.module_types import matrix_position, ordered_types
    from adalora_scores.runs.files import read_rank_pattern

    runs = run_folders(demo)
    grids = []
    for row in FIGURE_ROWS:
        ranks: dict[tuple[int, str], list[int]] = {}
        for folder in runs.get(row, []):
            for name, entry in (read_rank_pattern(folder) or {}).items():
                if (position := matrix_position(name)) is not None:
                    ranks.setdefault(position, []).append(entry["rank"])
        if ranks:
            grids.append((row, len(runs[row]), ranks))
    if not grids:
        raise SystemExit(f"{demo}: no finished run of {', '.join(FIGURE_ROWS)} with a rank_pattern.json.")
    kinds = ordered_types({kind for _, _, ranks in grids for _, kind in ranks})
    layers = 1 + max(layer for _, _, ranks in grids for layer, _ in ranks)
    top = max(max(values) for _, _, ranks in grids for values in ranks.values())
    figure, axes = plt.subplots(1, len(grids), figsize=(2.1 * len(grids) + 1.2, 0.32 * layers + 1.6), squeeze=False)
    for axis, (row, _, ranks) in zip(axes[0], grids, strict=True):
        values = [[statistics.fmean(ranks.get((layer, kind), [0])) for kind in kinds] for layer in range(layers)]
        image = axis.imshow(values, vmin=0, vmax=top, cmap="viridis", aspect="auto")
        axis.set_title(row, fontsize=9)
        axis.set_xticks(range(len(kinds)), kinds)
        axis.set_yticks(range(layers))
        axis.set_xlabel("module")
    axes[0][0].set_ylabel("layer")
    seeds = sorted({count for _, count, _ in grids})
    figure.colorbar(image, ax=axes[0].tolist(), label=f"final rank, mean over {'/'.join(map(str, seeds))} seeds")
    figure.suptitle("Where each score keeps its rank (demo, all-MiniLM-L6-v2)", fontsize=10, y=1.03)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)


def excerpt(demo: Path, machine: str, command: str) -> str:
    """The README's excerpt of the demo in ``demo``."""
    report = (demo / "report.md").read_text(encoding="utf-8")
    runs = [folder for folders in run_folders(demo).values() for folder in folders]
    finished = max((folder / "metrics.json").stat().st_mtime for folder in runs)
    date = datetime.datetime.fromtimestamp(finished, datetime.timezone.utc).date().isoformat()
    figure = FIGURE.relative_to(ROOT).as_posix()
    intro = (
        f"An excerpt of a real `report.md` ({len(runs)} runs on {date}, {machine}; `{command}`), {len(ROWS)} of "
        "its rows and a few of its columns:"
    )
    return "\n".join(
        [
            textwrap.fill(intro, width=116, break_on_hyphens=False, break_long_words=False),
            "",
            excerpt_table(report),
            "",
            f"![The final rank of every layer and module type, per score]({figure})",
        ]
    )


def replace_excerpt(readme: str, text: str) -> str:
    """``readme`` with the lines between the excerpt markers replaced by ``text``."""
    pattern = re.compile(rf"^({re.escape(BEGIN)}[^\n]*\n).*?^({re.escape(END)})", re.S | re.M)
    if not pattern.search(readme):
        raise SystemExit(f"README.md has no {BEGIN} ... {END} lines to write between.")
    return pattern.sub(lambda match: match[1] + text + "\n" + match[2], readme, count=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("demo", type=Path, help="a finished demo folder (report.md and its runs)")
    parser.add_argument("--machine", required=True, help="the machine it ran on, in words")
    parser.add_argument("--command", default="bash scripts/demo.sh", help="the command that made it")
    args = parser.parse_args(argv)
    if not (args.demo / "report.md").is_file():
        raise SystemExit(f"{args.demo}: no report.md; run `adalora-scores demo --output {args.demo}` first.")
    text = excerpt(args.demo, args.machine, args.command)
    draw_figure(args.demo, FIGURE)
    README.write_text(replace_excerpt(README.read_text(encoding="utf-8"), text), encoding="utf-8")
    print(f"wrote {FIGURE.relative_to(ROOT)} and the excerpt in README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
