"""The README's "Your own data" example runs as written: its commands through the CLI on a small CSV of three
string classes, with the Hub model name swapped for the tiny local model (train → sweep → report), then its Python
snippet reloads the adapter in stock PEFT."""

from __future__ import annotations

import csv
import json
import random
import re
import shlex
import textwrap
from pathlib import Path

import yaml
from conftest import sentence

from adalora_scores.cli import main

README = Path(__file__).parents[1] / "README.md"
HUB_MODEL = "microsoft/deberta-v3-base"


def _section() -> str:
    text = README.read_text(encoding="utf-8")
    return text.split("## Your own data\n", 1)[1].split("\n## ", 1)[0]


def _blocks(section: str, language: str) -> list[str]:
    return [textwrap.dedent(b) for b in re.findall(rf"^ *```{language}\n(.*?)^ *```", section, flags=re.S | re.M)]


def _reviews(folder: Path) -> None:
    """train.csv (24 rows) and dev.csv (9 rows) with the README's columns and three string classes."""
    folder.mkdir()
    rng = random.Random(0)
    for name, count in (("train", 24), ("dev", 9)):
        with (folder / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["review", "sentiment"])
            writer.writerows([sentence(rng), ("positive", "negative", "neutral")[i % 3]] for i in range(count))


def test_the_own_data_example_runs_as_written(tmp_path, tiny_model_dir, monkeypatch):
    section = _section()
    monkeypatch.chdir(tmp_path)
    _reviews(tmp_path / "reviews")
    (sweep_file,) = _blocks(section, "yaml")
    name = sweep_file.splitlines()[0].removeprefix("# ").strip()  # the block's first line names the file
    Path(name).write_text(sweep_file.replace(HUB_MODEL, str(tiny_model_dir)), encoding="utf-8")
    (commands,) = _blocks(section, "bash")
    lines = [shlex.split(line) for line in commands.replace("\\\n", " ").splitlines() if line.strip()]
    assert [line[:2] for line in lines] == [["adalora-scores", "train"], ["adalora-scores", "sweep"],
                                            ["adalora-scores", "report"]]  # fmt: skip
    for line in lines:
        assert main([str(tiny_model_dir) if word == HUB_MODEL else word for word in line[1:]]) == 0, line

    run = tmp_path / "runs" / "reviews-fisher"
    labels = json.loads((run / "labels.json").read_text())
    assert labels["labels"] == ["negative", "neutral", "positive"] and labels["label2id"]["positive"] == 2
    results = tmp_path / "results" / "reviews"
    manifest = yaml.safe_load((results / "sweep.yaml").read_text())
    assert len(manifest["runs"]) == 4  # 2 scores × 2 seeds
    accuracy = {
        name: json.loads((results / name / "metrics.json").read_text())["eval"]["dev"]["accuracy"]
        for name in manifest["runs"]
    }
    report = (results / "report.md").read_text()
    assert "classification" in report and "have no result" not in report
    fisher = [v for k, v in accuracy.items() if "__fisher__" in k]
    assert f"{sum(fisher) / 2:.2f}" in report  # the fisher cell is the mean over its two seeds

    (snippet,) = [b for b in _blocks(section, "python") if "PeftModel.from_pretrained" in b]
    namespace: dict = {}
    exec(compile(snippet.replace(HUB_MODEL, str(tiny_model_dir)), "README.md", "exec"), namespace)
    assert namespace["model"].config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    assert namespace["labels"] == labels["labels"]
