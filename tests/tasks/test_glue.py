"""GLUE: metrics by hand, loaders on the original layouts, and every task end to end through the CLI."""

from __future__ import annotations

import json
import math
import re

import pytest
import torch
from conftest import LAYOUTS, write_glue_folder
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from adalora_scores.cli import main
from adalora_scores.metrics.glue import glue_metrics
from adalora_scores.tasks import get_task, load_glue

TINY = [
    "num_epochs=2",
    "batch_size=4",
    "init_r=4",
    "target_r=2",
    "mask_interval=1",
    "max_seq_length=32",
    "learning_rate=5e-3",
    "eval_batch_size=4",
]


def test_metrics_by_hand():
    # 4 of 6 right; positive class: TP=2, FP=1, FN=1 → F1 = 2·2/(2·2+1+1) = 2/3
    acc_f1 = glue_metrics("accuracy_f1", [1, 1, 0, 0, 1, 0], [1, 1, 0, 1, 0, 0])
    assert acc_f1["accuracy"] == pytest.approx(400 / 6)
    assert acc_f1["f1"] == pytest.approx(200 / 3)
    # MCC = (TP·TN − FP·FN)/sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (2·2 − 1·1)/sqrt(3·3·3·3) = 1/3
    assert glue_metrics("matthews", [1, 1, 0, 0, 1, 0], [1, 1, 0, 1, 0, 0])["matthews_correlation"] == pytest.approx(
        100 / 3
    )
    # a monotone but non-linear relation: Spearman 1, Pearson below 1
    corr = glue_metrics("pearson_spearman", [1.0, 2.0, 3.0, 10.0], [1.0, 2.0, 3.0, 4.0])
    assert corr["spearman"] == pytest.approx(100.0)
    x, y = torch.tensor([1.0, 2, 3, 10]), torch.tensor([1.0, 2, 3, 4])
    pearson = ((x - x.mean()) * (y - y.mean())).sum() / math.sqrt(
        ((x - x.mean()) ** 2).sum() * ((y - y.mean()) ** 2).sum()
    )
    assert corr["pearson"] == pytest.approx(100 * pearson.item(), rel=1e-6)
    assert corr["corr"] == pytest.approx((corr["pearson"] + corr["spearman"]) / 2)


@pytest.mark.parametrize("task", sorted(LAYOUTS))
def test_original_layout_loads(task, glue_root):
    data = load_glue(get_task(task), glue_root / task)
    assert len(data.train) == 24
    assert set(data.evals) == set(get_task(task).eval_splits)
    first = data.train[0]
    assert first.text_a and (first.text_b is None) == (task in ("cola", "sst2"))
    if task == "mnli":
        assert [e.label for e in data.train[:3]] == [0, 1, 2]
    if task == "stsb":
        assert isinstance(first.label, float)


def test_named_columns_csv_and_jsonl(tmp_path):
    (tmp_path / "train.csv").write_text("premise,hypothesis,label\nA cat.,An animal.,entailment\nA.,B.,2\n")
    (tmp_path / "validation_matched.jsonl").write_text(json.dumps({"premise": "x", "hypothesis": "y", "label": 1}))
    (tmp_path / "validation_mismatched.json").write_text(json.dumps([{"premise": "x", "hypothesis": "y", "label": 0}]))
    data = load_glue(get_task("mnli"), tmp_path)
    assert [e.label for e in data.train] == [0, 2]
    assert data.evals["dev_matched"][0].label == 1


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: (d / "train.tsv").unlink(), "no train file"),
        (
            lambda d: (d / "dev.tsv").write_text("index\tsentence1\tsentence2\tlabel\n1\ta\tb\tmaybe\n"),
            "unknown label",
        ),
        (lambda d: (d / "train.tsv").write_text("index\tsentence1\tlabel\n1\ta\tentailment\n"), "missing column"),
    ],
)
def test_bad_data_names_file_and_fix(tmp_path, mutate, message):
    write_glue_folder(tmp_path, "rte")
    mutate(tmp_path)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as error:
        load_glue(get_task("rte"), tmp_path)
    assert str(tmp_path) in str(error.value)


@pytest.mark.parametrize("task", sorted(LAYOUTS))
def test_every_task_trains_and_evaluates_via_cli(task, glue_root, tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    args = [
        "train",
        "--task",
        task,
        "--score",
        "fisher",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(glue_root / task),
        "--output",
        str(out),
        "--seed",
        "3",
        *TINY,
    ]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    spec = get_task(task)
    assert set(metrics["eval"]) == set(spec.eval_splits)
    for values in metrics["eval"].values():
        assert spec.main_metric in values and math.isfinite(values[spec.main_metric])
    assert metrics["steps"] == metrics["total_steps"] == 12  # 24 examples / 4 × 2 epochs
    config = (out / "config.yaml").read_text()
    assert "total_steps: 12" in config and "score: fisher" in config
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13)) and log[-1]["budget"] == 24
    pattern = json.loads((out / "rank_pattern.json").read_text())
    assert sum(v["rank"] for v in pattern.values()) == metrics["final_budget"] <= 24
    base = AutoModelForSequenceClassification.from_pretrained(
        tiny_model_dir, num_labels=spec.num_labels, ignore_mismatched_sizes=True
    )
    reloaded = PeftModel.from_pretrained(base, out / "adapter")
    assert reloaded.peft_config["default"].rank_pattern is not None


def test_existing_output_is_never_overwritten(glue_root, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    args = [
        "train",
        "--task",
        "rte",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(glue_root / "rte"),
        "--output",
        str(out),
        *TINY,
    ]
    assert main(args) == 2
    assert "already holds files" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "precious" and len(list(out.iterdir())) == 1


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--task", "rtee"], "unknown task 'rtee'. Did you mean 'rte'"),
        (["--task", "rte", "--score", "fishr"], "unknown score 'fishr'"),
        (["--task", "rte", "--model", "./no/such/model"], "no such folder"),
        (["--task", "rte", "target_r=8"], "target_r \\(8\\) must be between 0 and init_r \\(4\\)"),
        (["--task", "rte", "tinit=6", "tfinal=6"], "no budgeting phase"),
        (["--task", "rte", "learning_rat=1"], "unknown config key 'learning_rat'. Did you mean 'learning_rate'"),
    ],
)
def test_cli_errors_are_clear_and_write_nothing(extra, message, glue_root, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "run"
    model = [] if "--model" in extra else ["--model", str(tiny_model_dir)]
    args = ["train", *model, "--data", str(glue_root / "rte"), "--output", str(out), *TINY, *extra]
    assert main(args) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists() or not (out / "metrics.json").exists()


@pytest.mark.parametrize("preset", ["paper-glue", "adalora-glue"])
def test_presets_resolve_for_every_task(preset):
    from adalora_scores.presets.files import load_preset
    from adalora_scores.presets.overrides import resolve_config

    tasks = [t for t in sorted(LAYOUTS) if not (preset == "adalora-glue" and t == "wnli")]
    for task in tasks:
        config = resolve_config(f"presets/train/{preset}.yaml", task, {"task": task}, ["seed=2"])
        assert config.model == "microsoft/deberta-v3-base" and config.seed == 2
        assert load_preset(preset, task)["learning_rate"] == config.learning_rate
    paper = resolve_config("paper-glue", "rte", {"task": "rte", "score": "movement"}, ["learning_rate=2e-3"])
    assert (paper.num_epochs, paper.init_r, paper.target_r, paper.learning_rate) == (3, 16, 8, 2e-3)
    with pytest.raises(KeyError, match="no entry for task 'wnli'"):
        resolve_config("adalora-glue", "wnli", {"task": "wnli"}, [])


def test_same_seed_same_run_on_cpu(glue_root, tiny_model_dir, tmp_path):
    runs = []
    for name in ("a", "b"):
        out = tmp_path / name
        data = str(glue_root / "rte")
        args = [
            "train",
            "--task",
            "rte",
            "--model",
            str(tiny_model_dir),
            "--data",
            data,
            "--output",
            str(out),
            "--seed",
            "5",
            *TINY,
            "group_by_length=true",
        ]
        assert main(args) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        runs.append(((out / "rank_pattern.json").read_text(), metrics["eval"], metrics["train_loss"]))
    assert runs[0] == runs[1]
