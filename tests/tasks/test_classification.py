"""The ``classification`` task on the user's own data: metrics by hand, task options, every file format and the Hub
path, errors that point at the data (and write nothing), and end-to-end runs through the CLI with reloading."""

from __future__ import annotations

import csv
import json
import math
import random
import re

import pytest
import torch
import yaml
from conftest import sentence
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from adalora_scores.cli import main
from adalora_scores.config import TrainConfig
from adalora_scores.metrics.classification import classification_metrics, regression_metrics
from adalora_scores.presets.overrides import resolve_config
from adalora_scores.runs.files import config_changes
from adalora_scores.study.results import collect
from adalora_scores.study.tuning import tune
from adalora_scores.tasks import check_run_config, configure_task, get_task, load_glue
from adalora_scores.tasks.classification import base_model_for_run, read_labels
from adalora_scores.tasks.tables import read_table

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
SENTIMENTS = ("positive", "negative", "neutral")


def _rows(count: int, seed: int, pair: bool = False, labels=SENTIMENTS, regression: bool = False) -> list[dict]:
    """``count`` rows of word salad: ``review`` (and ``answer`` for pairs), and ``sentiment`` cycling through
    ``labels`` or a numeric ``score``."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        row = {"review": sentence(rng)} | ({"answer": sentence(rng)} if pair else {})
        if regression:
            row["score"] = i % 5 + 0.5 * (i % 3)
        else:
            row["sentiment"] = labels[i % 3 % len(labels)]
        rows.append(row)
    return rows


def _write(path, rows: list[dict]) -> None:
    """``rows`` in the format of ``path``'s suffix."""
    if path.suffix in (".csv", ".tsv"):
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)


def _options(**extra) -> dict:
    return {"text_column": "review", "label_column": "sentiment", **extra}


# ---------------------------------------------------------------------------------------------- metrics, by hand
def test_macro_f1_and_mcc_by_hand():
    # three classes, gold [0,0,1,1,2,2], predicted [0,1,1,1,2,0]:
    # class 0: TP 1, FP 1 (item 5), FN 1 (item 1) → F1 = 2·1/(2·1+1+1) = 1/2
    # class 1: TP 2, FP 1 (item 1), FN 0           → F1 = 4/5
    # class 2: TP 1, FP 0, FN 1 (item 5)           → F1 = 2/3
    three = classification_metrics([0, 1, 1, 1, 2, 0], [0, 0, 1, 1, 2, 2], num_classes=3)
    assert three["accuracy"] == pytest.approx(400 / 6)
    assert three["macro_f1"] == pytest.approx(100 * (1 / 2 + 4 / 5 + 2 / 3) / 3)
    assert "matthews_correlation" not in three  # MCC only for two classes
    # a class of the mapping that is neither gold nor predicted counts with F1 0 (labels=all classes)
    assert classification_metrics([0, 1], [0, 1], num_classes=3)["macro_f1"] == pytest.approx(200 / 3)
    # two classes, gold [1,1,0,1,0,0], predicted [1,1,0,0,1,0]: TP 2, TN 2, FP 1, FN 1
    # MCC = (TP·TN − FP·FN)/√((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (4 − 1)/√(3·3·3·3) = 1/3
    two = classification_metrics([1, 1, 0, 0, 1, 0], [1, 1, 0, 1, 0, 0], num_classes=2)
    assert two["matthews_correlation"] == pytest.approx(100 / 3)
    assert two["macro_f1"] == pytest.approx(100 * (2 / 3 + 2 / 3) / 2)  # each class: TP 2, FP 1, FN 1


def test_regression_metrics_by_hand():
    # monotone, not linear: Spearman 100. Pearson: deviations from the means (4 and 2.5) are (−3, −2, −1, 6) and
    # (−1.5, −0.5, 0.5, 1.5): r = 14/√(50·5). MSE = (0 + 0 + 0 + 6²)/4 = 9
    result = regression_metrics([1.0, 2.0, 3.0, 10.0], [1.0, 2.0, 3.0, 4.0])
    assert result["spearman"] == pytest.approx(100.0)
    assert result["pearson"] == pytest.approx(100 * 14 / math.sqrt(250))
    assert result["mse"] == pytest.approx(9.0)
    assert math.isnan(regression_metrics([2.0, 2.0, 2.0], [1.0, 2.0, 3.0])["pearson"])  # constant: undefined


# ---------------------------------------------------------------------------------------------- task options
@pytest.mark.parametrize(
    "options,error,message",
    [
        (
            {"text_colum": "review"},
            ValueError,
            r"unknown task option 'text_colum' .*Did you mean 'text_column'\? "
            r"Known options: text_column, text_pair_column, label_column",
        ),
        ({"label_column": "y"}, ValueError, r"needs task_options.text_column.*task_options.text_column=review"),
        (_options(regression="yes"), ValueError, "task_options.regression must be true or false"),
        (_options(train_file="x.csv"), ValueError, "train_file and task_options.dev_file go together"),
        (_options(main_metric="mse"), ValueError, "main_metric=mse is not a classification metric"),
        (_options(train_file="no.csv", dev_file="no.csv"), FileNotFoundError, "task_options.train_file: no such file"),
    ],
)
def test_options_are_checked_by_the_task(options, error, message):
    with pytest.raises(error, match=message):
        configure_task("classification", options)


def test_options_reach_the_task_from_presets_and_overrides(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text(
        yaml.safe_dump({"kind": "train", "defaults": {"task_options": _options(main_metric="macro_f1")}})
    )
    config = resolve_config(
        str(preset),
        "classification",
        {"task": "classification"},
        ["task_options.label_column=stars", "task_options.regression=true", "task_options.main_metric=mse"],
    )
    assert config.task_options == {
        "text_column": "review",
        "label_column": "stars",
        "regression": True,
        "main_metric": "mse",
    }
    assert configure_task(config.task, config.task_options).main_metric == "mse"
    with pytest.raises(ValueError, match="task rte takes no task_options"):
        check_run_config(resolve_config(None, "rte", {"task": "rte"}, ["task_options.text_column=x"]))
    with pytest.raises(ValueError, match="needs task_options.text_column"):
        check_run_config(resolve_config(None, "classification", {"task": "classification"}, []))


def test_a_saved_config_without_task_options_is_unchanged():
    """Run folders written before ``task_options`` existed still count as the same config (new field at its
    default); a real change is reported."""
    saved = TrainConfig(task="rte").to_dict()
    del saved["task_options"]
    assert config_changes(saved, TrainConfig(task="rte", task_options={})) == []
    assert config_changes(saved, TrainConfig(task="rte", task_options={"a": 1})) == [("task_options", {}, {"a": 1})]


# ---------------------------------------------------------------------------------------------- data
@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".jsonl", ".parquet"])
def test_every_format_gives_the_same_examples(suffix, tmp_path):
    rows = _rows(9, seed=0, pair=True)
    rows[0]["review"] = 'a "quoted", text'  # quotes and a comma survive every format
    _write(tmp_path / f"train{suffix}", rows)
    _write(tmp_path / f"validation{suffix}", rows[:3])
    task = configure_task("classification", _options(text_pair_column="answer"))
    data = task.load(tmp_path)
    assert task.labels == ("negative", "neutral", "positive")  # sorted
    assert [(e.text_a, e.text_b, task.labels[e.label]) for e in data.train] == [
        (r["review"], r["answer"], r["sentiment"]) for r in rows
    ]
    assert len(data.evals["dev"]) == 3


def test_records_know_their_line(tmp_path):
    (tmp_path / "a.json").write_text('{"version": 2,\n "data": [\n  {"t": 1},\n\n  {"t": 2,\n   "u": 3}]}\n')
    assert [r.where.split(", ")[1] for r in read_table(tmp_path / "a.json").records] == ["line 3", "line 5"]
    (tmp_path / "a.csv").write_text('t,u\n"two\nlines",1\n\nnext,2\n')
    assert [r.where.split(", ")[1] for r in read_table(tmp_path / "a.csv").records] == ["line 2", "line 5"]
    (tmp_path / "a.jsonl").write_text('{"t": 1}\n\n{"t": 2}\n')
    assert [r.where.split(", ")[1] for r in read_table(tmp_path / "a.jsonl").records] == ["line 1", "line 3"]


def test_label_mapping_is_sorted_and_whole_numbers_are_one_label(tmp_path):
    rows = [{"review": "a", "sentiment": value} for value in (10, 2, 1, 2.0, "10")]
    _write(tmp_path / "train.jsonl", rows)
    _write(tmp_path / "dev.csv", [{"review": "b", "sentiment": "2"}])  # CSV text "2" is the JSON number 2
    task = configure_task("classification", _options())
    data = task.load(tmp_path)
    assert task.labels == ("1", "2", "10")  # numerically, not as text
    assert [e.label for e in data.train] == [2, 1, 0, 1, 2] and data.evals["dev"][0].label == 1
    assert task.head_config()["id2label"] == {0: "1", 1: "2", 2: "10"}


def test_the_hub_path_with_a_local_dataset_dict(monkeypatch):
    import datasets

    rows = _rows(6, seed=1)
    local = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(rows), "test": datasets.Dataset.from_list(rows[:2])}
    )
    requested = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args: requested.append(args) or local)
    task = configure_task("classification", _options(hub_dataset="someone/reviews", hub_config="en", dev_split="test"))
    data = task.load(None)
    assert requested == [("someone/reviews", "en")]
    assert len(data.train) == 6 and task.labels == ("negative", "neutral", "positive")
    with pytest.raises(ValueError, match=r"has no split 'validation' \(it has train, test\).*task_options.dev_split"):
        configure_task("classification", _options(hub_dataset="someone/reviews")).load(None)


# ---------------------------------------------------------------------------------------------- bad data
_GOOD = "review,sentiment\nthe cat,positive\nthe dog,negative\n"
BAD = [  # (train.csv, dev.csv, options, expected message)
    (
        "text,sentiment\nthe cat,positive\n",
        _GOOD,
        {},
        r"train.csv, line 1 \(the header\): no column 'review' \(columns: text, sentiment\); set "
        r"task_options.text_column to one of them",
    ),
    (
        "review,sentiment\nthe cat,positive\n  ,negative\n",
        _GOOD,
        {},
        r"train.csv, line 3, column 'review': empty text; fill it in or remove the row",
    ),
    (
        "review,sentiment\nthe cat,positive\nthe dog,\n",
        _GOOD,
        {},
        r"train.csv, line 3, column 'sentiment': empty label",
    ),
    (
        "review,sentiment\nthe cat,positive\nthe dog,positive\n",
        _GOOD,
        {},
        r"train.csv: every example has the label 'positive' in column 'sentiment' \(from line 2 on\).*"
        r"task_options.label_column, or add examples of the other classes",
    ),
    (
        _GOOD,
        "review,sentiment\nthe cat,positive\nthe dog,negative\ncaf\xe9 noir,positive\n",
        {},
        r"dev.csv, line 4, column 'review': byte 0xe9 \(byte 4 of the line\) is not UTF-8.*iconv -f latin1 -t utf-8",
    ),
    (
        _GOOD,
        "review,sentiment\nthe cat,mixed\n",
        {},
        r"dev.csv, line 2, column 'sentiment': label 'mixed' is not one of the labels of the training data "
        r"\(negative, positive\); fix the label",
    ),
    (
        "review,sentiment\nthe cat,1\nthe dog,0.5\n",
        _GOOD,
        {},
        r"train.csv, line 3, column 'sentiment': label '0.5' is a number with a fraction; .*regression=true",
    ),
    (
        "review,sentiment\nthe cat,positive\nthe dog, the mat,negative\n",
        _GOOD,
        {},
        r"train.csv, line 3: 3 fields but the header \(line 1\) has 2; quote a text that holds a comma",
    ),
    (
        "review,sentiment\nthe cat,0.5\nthe dog,high\n",
        _GOOD,
        {"regression": True},
        r"train.csv, line 3, column 'sentiment': 'high' is not a number; a regression target",
    ),
]


@pytest.mark.parametrize("train,dev,options,message", BAD)
def test_bad_data_is_one_line_naming_file_line_column_and_fix(train, dev, options, message, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "train.csv").write_bytes(train.encode("latin-1"))
    (data / "dev.csv").write_bytes(dev.encode("latin-1"))
    out = tmp_path / "run"
    extra = [f"task_options.{k}={str(v).lower()}" for k, v in options.items()]
    code = main(
        [
            "train",
            "--task",
            "classification",
            "--data",
            str(data),
            "--output",
            str(out),
            "--model",
            "unused-model-name",
            "task_options.text_column=review",
            "task_options.label_column=sentiment",
            *extra,
        ]
    )
    error = capsys.readouterr().err.strip()
    assert code == 2 and len(error.splitlines()) == 1, error
    assert error.startswith("adalora-scores train: error: ") and str(data) in error
    assert re.search(message, error), error
    assert not out.exists()  # nothing written


def test_glue_named_files_say_the_line_and_refuse_non_utf8(tmp_path):
    (tmp_path / "train.csv").write_text("sentence1,sentence2,label\na,b,entailment\nc,d\n")
    (tmp_path / "dev.jsonl").write_text('{"sentence1": "a", "sentence2": "b", "label": 0}\n\n{"sentence1": "a"}\n')
    with pytest.raises(ValueError, match=r"train.csv, line 3: 2 fields but the header \(line 1\) has 3"):
        load_glue(get_task("rte"), tmp_path)
    (tmp_path / "train.csv").write_text("sentence1,sentence2,label\na,b,entailment\n")
    with pytest.raises(ValueError, match=r"dev.jsonl, line 3: missing column\(s\) \['sentence2', 'label'\]"):
        load_glue(get_task("rte"), tmp_path)
    (tmp_path / "dev.jsonl").unlink()
    (tmp_path / "dev.tsv").write_bytes(b"index\tsentence1\tsentence2\tlabel\n0\tna\xefve\tb\tentailment\n")
    with pytest.raises(ValueError, match=r"dev.tsv, line 2, column 'sentence1': byte 0xef .* is not UTF-8"):
        load_glue(get_task("rte"), tmp_path)


# ---------------------------------------------------------------------------------------------- end to end
def test_sentence_pairs_from_tsv_train_and_reload(tmp_path, tiny_model_dir):
    data = tmp_path / "pairs"
    data.mkdir()
    labels = ("entailment", "contradiction")
    _write(data / "train.tsv", _rows(24, seed=2, pair=True, labels=labels))
    _write(data / "dev.tsv", _rows(8, seed=3, pair=True, labels=labels))
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "classification",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(data),
                "--output",
                str(out),
                *TINY,
                "task_options.text_column=review",
                "task_options.text_pair_column=answer",
                "task_options.label_column=sentiment",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == "classification" and metrics["main_metric"] == "accuracy"
    assert set(metrics["eval"]["dev"]) == {"accuracy", "macro_f1", "matthews_correlation"}
    assert read_labels(out)["labels"] == ["contradiction", "entailment"]
    assert yaml.safe_load((out / "config.yaml").read_text())["task_options"]["text_pair_column"] == "answer"
    stock = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)  # no helper at all
    assert PeftModel.from_pretrained(stock, out / "adapter").peft_config["default"].rank_pattern is not None
    model = PeftModel.from_pretrained(base_model_for_run(out, str(tiny_model_dir)), out / "adapter")
    assert model.config.num_labels == 2 and model.config.id2label == {0: "contradiction", 1: "entailment"}


def test_a_sweep_over_scores_and_learning_rates_tunes_on_a_lower_is_better_metric(tmp_path, tiny_model_dir):
    """Sentence pairs with a regression target from Parquet, ranked on MSE: sweep, then the tuned report picks per
    score the learning rate with the *smallest* dev MSE."""
    rows = _rows(32, seed=9, pair=True, regression=True)
    _write(tmp_path / "train.parquet", rows[:24])
    _write(tmp_path / "dev.parquet", rows[24:])
    tiny = {key: yaml.safe_load(value) for key, value in (item.split("=") for item in TINY[:-2])}  # not the LR
    spec = {
        "kind": "sweep",
        "grid": {
            "task": ["classification"],
            "score": ["sensitivity", "fisher"],
            "learning_rate": [1e-3, 2e-2],
            "seed": [1],
        },
        "set": {
            "model": str(tiny_model_dir),
            **tiny,
            "task_options": {
                "text_column": "review",
                "text_pair_column": "answer",
                "label_column": "score",
                "regression": True,
                "main_metric": "mse",
            },
        },
        "data": {"classification": str(tmp_path)},
    }
    (tmp_path / "grid.yaml").write_text(yaml.safe_dump(spec))
    results = tmp_path / "results"
    assert main(["sweep", str(tmp_path / "grid.yaml"), "--output", str(results)]) == 0
    assert main(["report", str(results), "--tuned", "learning_rate", "--select-on", "dev", "--no-plots"]) == 0
    mse = {}
    for path in results.glob("*/metrics.json"):
        metrics = json.loads(path.read_text())
        assert metrics["main_metric"] == "mse" and read_labels(path.parent)["regression"] is True
        config = yaml.safe_load((path.parent / "config.yaml").read_text())
        mse[(config["score"], config["learning_rate"])] = metrics["eval"]["dev"]["mse"]
    assert len(mse) == 4
    _, choices = tune(collect(results), "learning_rate", "dev")
    for choice in choices:
        assert choice.lower_is_better and choice.metric == "mse"
        assert choice.chosen == min((1e-3, 2e-2), key=lambda lr: mse[(choice.row[0], lr)])


def test_a_regression_target_from_jsonl(tmp_path, tiny_model_dir):
    data = tmp_path / "scores"
    data.mkdir()
    _write(data / "train.jsonl", _rows(24, seed=4, regression=True))
    _write(data / "dev.jsonl", _rows(8, seed=5, regression=True))
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "classification",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(data),
                "--output",
                str(out),
                *TINY,
                "task_options.text_column=review",
                "task_options.label_column=score",
                "task_options.regression=true",
                "task_options.main_metric=mse",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["main_metric"] == "mse" and set(metrics["eval"]["dev"]) == {"pearson", "spearman", "mse"}
    assert math.isfinite(metrics["eval"]["dev"]["mse"])
    assert read_labels(out) | {"labels": None} == {
        "regression": True,
        "label_column": "score",
        "labels": None,
        "id2label": {},
        "label2id": {},
    }
    base = base_model_for_run(out, str(tiny_model_dir))
    assert base.config.num_labels == 1 and base.config.problem_type == "regression"
    PeftModel.from_pretrained(base, out / "adapter")


def test_parquet_files_named_by_option(tmp_path, tiny_model_dir):
    rows = [{"text": r["review"], "label": i % 2} for i, r in enumerate(_rows(32, seed=6))]
    _write(tmp_path / "mine-train.parquet", rows[:24])
    _write(tmp_path / "mine-dev.parquet", rows[24:])
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "classification",
                "--model",
                str(tiny_model_dir),
                "--output",
                str(out),
                *TINY,
                "task_options.text_column=text",
                f"task_options.train_file={tmp_path / 'mine-train.parquet'}",
                f"task_options.dev_file={tmp_path / 'mine-dev.parquet'}",
                "task_options.main_metric=matthews_correlation",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["main_metric"] == "matthews_correlation" and metrics["train_examples"] == 24
    assert read_labels(out)["label2id"] == {"0": 0, "1": 1}
    bad = tmp_path / "bad.parquet"
    _write(bad, [{"text": "a", "label": 0}, {"text": None, "label": 1}])
    with pytest.raises(ValueError, match=r"bad.parquet, row 2, column 'text': empty text"):
        configure_task("classification", {"text_column": "text", "train_file": str(bad), "dev_file": str(bad)}).load(
            None
        )


def test_label_mapping_round_trips_through_a_reloaded_adapter(tmp_path, tiny_model_dir):
    """The reloaded adapter, with the head from ``labels.json``, predicts the dev labels (by name) with exactly the
    accuracy the run recorded."""
    from transformers import AutoTokenizer

    data = tmp_path / "data"
    data.mkdir()
    dev = _rows(9, seed=8)
    _write(data / "train.csv", _rows(24, seed=7))
    _write(data / "dev.csv", dev)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "classification",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(data),
                "--output",
                str(out),
                *TINY,
                "task_options.text_column=review",
                "task_options.label_column=sentiment",
            ]
        )
        == 0
    )
    recorded = json.loads((out / "metrics.json").read_text())["eval"]["dev"]["accuracy"]
    model = PeftModel.from_pretrained(base_model_for_run(out, str(tiny_model_dir)), out / "adapter").eval()
    tokenizer = AutoTokenizer.from_pretrained(out / "adapter")
    with torch.no_grad():
        logits = model(**tokenizer([r["review"] for r in dev], padding=True, return_tensors="pt")).logits
    predicted = [model.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert read_labels(out)["labels"] == ["negative", "neutral", "positive"]
    correct = sum(p == r["sentiment"] for p, r in zip(predicted, dev, strict=True))
    assert 100 * correct / len(dev) == pytest.approx(recorded)
