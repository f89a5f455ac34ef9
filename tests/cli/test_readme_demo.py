"""``scripts/readme_demo.py`` writes the README's demo excerpt and figure from a demo folder: checked on a tiny demo
against the runs' own metrics, and the README holds what it wrote."""

from __future__ import annotations

import importlib.util
import json
import statistics
from pathlib import Path

import pytest

from adalora_scores.cli import main

ROOT = Path(__file__).parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("readme_demo", ROOT / "scripts" / "readme_demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


readme_demo = _script()


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme-demo") / "demo"
    assert main(["demo", "--output", str(folder), "--tiny", "--seeds", "1,2", "num_epochs=1", "batch_size=32"]) == 0
    return folder


def _rows(table: str) -> dict[str, list[str]]:
    lines = [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    return {cells[0].strip("`"): cells for cells in lines}


def test_the_excerpt_holds_the_runs_results(demo: Path):
    text = readme_demo.excerpt(demo, "a test machine", "adalora-scores demo --tiny")
    assert "26 runs on " in text and "a test machine; `adalora-scores demo --tiny`" in text
    rows = _rows(text[text.index("| score |") : text.index("\n\n![")])
    assert list(rows) == list(readme_demo.ROWS)
    for name, cells in rows.items():
        accuracy = [
            json.loads((demo / f"contrast_sentiment__{name}__seed{seed}" / "metrics.json").read_text())["eval"]["dev"][
                "accuracy"
            ]
            for seed in (1, 2)
        ]
        assert cells[1].startswith(f"{statistics.fmean(accuracy):.2f} ± {statistics.stdev(accuracy):.2f}"), cells
    assert rows["sensitivity"][2] == "–"  # the reference of the paired tests
    assert rows["fisher"][2].startswith(("+", "-", "−")) and "[" in rows["fisher"][2]
    reliability = {
        r["score"]: r
        for r in json.loads((demo / "report.json").read_text())["diagnostics"]["contrast_sentiment"]["reliability"]
    }
    assert rows["random"][4].startswith(f"{reliability['random']['jaccard']:.2f}"), rows["random"]


def test_the_figure_is_drawn_from_the_rank_patterns(demo: Path, tmp_path: Path):
    readme_demo.draw_figure(demo, tmp_path / "ranks.png")
    assert (tmp_path / "ranks.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "ranks.png").stat().st_size > 5000


def test_only_the_lines_between_the_markers_change():
    readme = f"# Title\n\n{readme_demo.BEGIN} (note) -->\nold\ntable\n{readme_demo.END}\n\nrest\n"
    assert readme_demo.replace_excerpt(readme, "new") == (
        f"# Title\n\n{readme_demo.BEGIN} (note) -->\nnew\n{readme_demo.END}\n\nrest\n"
    )
    with pytest.raises(SystemExit, match="no <!-- demo-excerpt: begin"):
        readme_demo.replace_excerpt("# Title\n", "new")


def test_the_readme_shows_what_the_script_wrote():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = readme.index(readme_demo.BEGIN), readme.index(readme_demo.END)
    excerpt = readme[start:end]
    assert "| " + " | ".join(readme_demo.COLUMNS) + " |" in excerpt
    assert list(_rows(excerpt[excerpt.index("| score |") : excerpt.index("\n\n![")])) == list(readme_demo.ROWS)
    assert readme_demo.FIGURE.relative_to(ROOT).as_posix() in excerpt and readme_demo.FIGURE.is_file()
    assert start < readme.index("## Quick start")  # on the first screen, after the two commands
