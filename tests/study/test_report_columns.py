"""The report shows what was run: only columns with results, the paper's values in a reference table, the paper's
averages only with all nine columns, and missing runs of the manifest still listed."""

from __future__ import annotations

import json

import yaml

from adalora_scores.study.paper import PAPER
from adalora_scores.study.report import build_report


def _write_run(root, task: str, score: str, seed: int, accuracy: float) -> None:
    folder = root / f"{task}__{score}__seed{seed}"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"task": task, "score": score, "seed": seed}))
    (folder / "metrics.json").write_text(json.dumps({"eval": {"dev": {"accuracy": accuracy}}}))


def test_a_partial_glue_sweep_shows_only_its_columns(tmp_path):
    runs = {}
    for task in ("rte", "mrpc", "sst2"):
        for score in ("sensitivity", "fisher_per_example"):
            for seed in (1, 2):
                runs[f"{task}__{score}__seed{seed}"] = {"task": task, "score": score, "seed": seed}
                if task != "sst2":  # SST-2 is in the grid but has not run yet
                    _write_run(tmp_path, task, score, seed, 80.0 + seed)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"runs": runs}))
    build_report(tmp_path, plot=False)
    report = (tmp_path / "report.md").read_text()
    table = report.split("## Table 1: GLUE dev")[1].split("###")[0]
    header = next(line for line in table.splitlines() if line.startswith("| score"))
    assert [c.strip() for c in header.split("|")[1:-1]] == ["score", "adapter params", "MRPC Acc", "RTE Acc"]
    assert "missing" not in table and "All Ave." not in table and "All Ave." not in report
    fisher = next(line for line in table.splitlines() if line.startswith("| `fisher_per_example`"))
    # 81.5 ± std of (81, 82) over 2 seeds, Δ against the paper's RTE value for its Fisher column
    assert f"81.50 ± 0.71 (2) · Δ paper {81.5 - PAPER[('fisher_per_example', 'RTE Acc')]:+.2f}" in fisher
    reference = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in table.splitlines()
        if line.startswith("| `") and "(2)" not in line
    }
    gsnr = [f"{PAPER[('gsnr_per_example', 'MRPC Acc')]:.2f}", f"{PAPER[('gsnr_per_example', 'RTE Acc')]:.2f}"]
    assert reference["`gsnr_per_example`"] == gsnr
    assert "4 of 12 runs of the sweep have no result" in report and "`sst2__fisher_per_example__seed2`" in report
    cells = json.loads((tmp_path / "report.json").read_text())["table1"]["cells"]
    assert {c["column"] for c in cells} == {"MRPC Acc", "RTE Acc"}


def test_a_task_outside_the_paper_gets_no_paper_table(tmp_path):
    for seed in (1, 2):
        _write_run(tmp_path, "contrast_sentiment", "fisher", seed, 60.0)
    for path in tmp_path.glob("*/metrics.json"):
        path.write_text(json.dumps({"main_metric": "accuracy", **json.loads(path.read_text())}))
    build_report(tmp_path, plot=False)
    report = (tmp_path / "report.md").read_text()
    assert "contrast_sentiment accuracy" in report and "Table 1" not in report
    assert "Kim et al. (single runs)" not in report and "missing" not in report
