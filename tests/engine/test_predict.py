"""``adalora-scores predict RUN --input FILE --output FILE``: a finished run's adapter, reloaded with stock PEFT,
labels (or scores, answers, continues) new data. Predicting a run's own dev file reproduces the dev metric the run
recorded, for every kind of task; labels are not needed; bad input gets the file and line, as training data does;
nothing is overwritten without ``--overwrite``."""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch
from _squad import write_squad_folder
from conftest import sentence
from test_causal_lm import TINY as CAUSAL_TINY
from test_causal_lm import decoders  # noqa: F401  (the module-scoped fixture)
from test_classification import TINY, _rows, _write

from adalora_scores.cli import main
from adalora_scores.engine.prediction import predict_file
from adalora_scores.metrics.classification import classification_metrics, regression_metrics
from adalora_scores.metrics.glue import glue_metrics
from adalora_scores.metrics.squad import evaluate as squad_evaluate
from adalora_scores.tasks import TaskBase, configure_task, get_task, list_tasks
from adalora_scores.tasks.causal_lm import extract_answer, same_answer

SENTIMENT = ["task_options.text_column=review", "task_options.label_column=sentiment"]


def _train(run, *arguments: str) -> dict:
    assert main(["train", *arguments, "--output", str(run)]) == 0
    return json.loads((run / "metrics.json").read_text())["eval"]


def _read_csv(path) -> list[dict]:
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _keyword_rows(count: int, seed: int) -> list[dict]:
    """Reviews whose label a keyword gives away, so that the tiny model learns to tell some of them apart."""
    rng, keyword = random.Random(seed), {"positive": "good", "negative": "bad", "neutral": "house"}
    labels = ("positive", "negative", "neutral")
    return [
        {"review": f"{keyword[labels[i % 3]]} {keyword[labels[i % 3]]} {sentence(rng, 3)}", "sentiment": labels[i % 3]}
        for i in range(count)
    ]


@pytest.fixture(scope="module")
def reviews_run(tmp_path_factory, tiny_model_dir):
    """A classification run on three named labels: its folder, its data folder and its recorded dev metrics."""
    root = tmp_path_factory.mktemp("reviews")
    data = root / "data"
    data.mkdir()
    _write(data / "train.csv", _keyword_rows(48, seed=7))
    _write(data / "dev.csv", _keyword_rows(12, seed=8))
    run = root / "run"
    learned = [
        *(item for item in TINY if item.split("=")[0] not in ("num_epochs", "learning_rate")),
        "num_epochs=6",
        "learning_rate=2e-2",
    ]
    recorded = _train(
        run, "--task", "classification", "--model", str(tiny_model_dir), "--data", str(data), *learned, *SENTIMENT
    )
    return run, data, recorded["dev"]


# ------------------------------------------------------------------------- the dev metric, reproduced
def test_classification_predictions_reproduce_the_recorded_dev_metrics(reviews_run, tmp_path):
    run, data, recorded = reviews_run
    output = tmp_path / "dev-predictions.csv"
    assert main(["predict", str(run), "--input", str(data / "dev.csv"), "--output", str(output)]) == 0
    rows, dev = _read_csv(output), _read_csv(data / "dev.csv")
    assert [row["review"] for row in rows] == [row["review"] for row in dev]  # one record per row, in input order
    assert list(rows[0]) == [
        "review",
        "sentiment",
        "prediction",
        "probability_negative",
        "probability_neutral",
        "probability_positive",
    ]
    for row in rows:
        probabilities = {label: float(row[f"probability_{label}"]) for label in ("negative", "neutral", "positive")}
        assert sum(probabilities.values()) == pytest.approx(1.0, abs=1e-6)
        assert row["prediction"] == max(probabilities, key=probabilities.get)
    labels = ["negative", "neutral", "positive"]  # labels.json's class ids
    predicted = [labels.index(row["prediction"]) for row in rows]
    assert len(set(predicted)) > 1  # the model tells rows apart, so the comparison means something
    gold = [labels.index(row["sentiment"]) for row in dev]
    assert classification_metrics(predicted, gold, 3) == recorded  # exactly: accuracy, macro-F1


def test_unlabelled_input_in_any_format_gets_the_same_labels(reviews_run, tmp_path):
    run, data, _ = reviews_run
    labelled = predict_file(run, data / "dev.csv", tmp_path / "labelled.json")
    texts = [{"id": i, "review": row["review"]} for i, row in enumerate(_read_csv(data / "dev.csv"))]
    _write(tmp_path / "new.parquet", texts)
    predictions = predict_file(run, tmp_path / "new.parquet", tmp_path / "new.jsonl", ["eval_batch_size=5"])
    written = _read_jsonl(tmp_path / "new.jsonl")
    assert written == predictions.records and [row["id"] for row in written] == list(range(len(texts)))
    assert [row["prediction"] for row in written] == [row["prediction"] for row in labelled.records]
    assert json.loads((tmp_path / "labelled.json").read_text()) == labelled.records  # .json: an array of records
    assert all(
        row["probability_neutral"] == pytest.approx(old["probability_neutral"], abs=1e-6)
        for row, old in zip(written, labelled.records, strict=True)
    )


def test_a_regression_run_predicts_values_that_give_its_recorded_metrics(tmp_path, tiny_model_dir):
    data = tmp_path / "scores"
    data.mkdir()
    _write(data / "train.jsonl", _rows(24, seed=4, regression=True))
    _write(data / "dev.jsonl", _rows(8, seed=5, regression=True))
    recorded = _train(
        tmp_path / "run",
        "--task",
        "classification",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(data),
        *TINY,
        "task_options.text_column=review",
        "task_options.label_column=score",
        "task_options.regression=true",
    )["dev"]
    output = tmp_path / "values.jsonl"
    assert main(["predict", str(tmp_path / "run"), "--input", str(data / "dev.jsonl"), "--output", str(output)]) == 0
    rows = _read_jsonl(output)
    assert all(isinstance(row["prediction"], float) and "probability_0" not in row for row in rows)
    again = regression_metrics([row["prediction"] for row in rows], [row["score"] for row in rows])
    assert again == pytest.approx(recorded, rel=1e-6)


@pytest.mark.parametrize(("task", "names"), [("rte", ("entailment", "not_entailment")), ("mrpc", (0, 1))])
def test_a_glue_run_reproduces_its_dev_metric_from_the_original_tsv(task, names, glue_root, tiny_model_dir, tmp_path):
    """GLUE label names where GLUE has them (RTE), class indices for the 0/1 tasks (MRPC)."""
    run = tmp_path / "run"
    recorded = _train(run, "--task", task, "--model", str(tiny_model_dir), "--data", str(glue_root / task), *TINY)[
        "dev"
    ]
    output = tmp_path / "dev.jsonl"
    assert main(["predict", str(run), "--input", str(glue_root / task / "dev.tsv"), "--output", str(output)]) == 0
    rows = _read_jsonl(output)
    assert {row["prediction"] for row in rows} <= set(names)
    assert set(rows[0]) >= {f"probability_{name}" for name in names}
    gold = [example.label for example in get_task(task).load(glue_root / task).evals["dev"]]
    predicted = [names.index(row["prediction"]) for row in rows]
    assert glue_metrics("accuracy_f1" if task == "mrpc" else "accuracy", predicted, gold) == recorded


def test_glue_test_files_with_the_hubs_column_names_need_no_label(glue_root, tiny_model_dir, tmp_path):
    """GLUE's test files have an index and the text columns, no label (here SST-2's layout)."""
    run = tmp_path / "run"
    _train(run, "--task", "sst2", "--model", str(tiny_model_dir), "--data", str(glue_root / "sst2"), *TINY)
    dev = [line.split("\t") for line in (glue_root / "sst2" / "dev.tsv").read_text().splitlines()[1:]]
    test = tmp_path / "test.tsv"
    test.write_text("index\tsentence\n" + "".join(f"{i}\t{s}\n" for i, (s, _) in enumerate(dev)), encoding="utf-8")
    on_dev = predict_file(run, glue_root / "sst2" / "dev.tsv", tmp_path / "dev.csv").records
    on_test = predict_file(run, test, tmp_path / "test.csv").records
    assert [r["prediction"] for r in on_test] == [r["prediction"] for r in on_dev]
    assert [r["index"] for r in on_test] == [str(i) for i in range(len(dev))]
    assert list(_read_csv(tmp_path / "test.csv")[0]) == [
        "index",
        "sentence",
        "prediction",
        "probability_0",
        "probability_1",
    ]


@pytest.mark.parametrize("data", ["data", "chat"])
def test_causal_lm_generations_reproduce_the_recorded_exact_match(data, decoders, tmp_path):  # noqa: F811
    root, models = decoders
    run = tmp_path / "run"
    recorded = _train(
        run,
        "--task",
        "causal_lm",
        "--model",
        str(models["llama"]),
        "--data",
        str(root / data),
        *CAUSAL_TINY,
        "task_options.generate=true",
        "task_options.max_new_tokens=6",
        "task_options.main_metric=exact_match",
    )["dev"]
    output = tmp_path / "generations.jsonl"
    assert (
        main(
            [
                "predict",
                str(run),
                "--input",
                str(root / data / "dev.jsonl"),
                "--output",
                str(output),
                "eval_batch_size=3",
            ]
        )
        == 0
    )
    rows, evaluated = _read_jsonl(output), _read_jsonl(run / "predictions.jsonl")
    assert [row["generation"] for row in rows] == [row["generation"] for row in evaluated]
    dev = _read_jsonl(root / data / "dev.jsonl")
    references = [row["completion"] if data == "data" else row["messages"][-1]["content"] for row in dev]
    hits = [
        same_answer(extract_answer(row["generation"]), extract_answer(reference))
        for row, reference in zip(rows, references, strict=True)
    ]
    assert 100.0 * sum(hits) / len(hits) == recorded["exact_match"]
    if data == "data":
        assert rows[0]["prompt"] == dev[0]["prompt"] and set(rows[0]) == {"prompt", "completion", "generation"}
        return
    # a conversation that ends with the user's turn is the prompt as it stands, and gives the same continuation
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"messages": row["messages"][:-1]}) + "\n" for row in dev), "utf-8")
    again = predict_file(run, prompts, tmp_path / "again.jsonl", ["eval_batch_size=8"])
    assert [row["generation"] for row in again.records] == [row["generation"] for row in rows]


@pytest.mark.parametrize("task", ["squad", "squad_v2"])
def test_squad_answers_reproduce_the_recorded_exact_match_and_f1(task, tiny_model_dir, tmp_path):
    version_2 = task == "squad_v2"
    data = tmp_path / "data"
    write_squad_folder(data, version_2)
    run = tmp_path / "run"
    squad_tiny = [*TINY[:5], "max_seq_length=48", *TINY[6:], "task_options.doc_stride=16"]
    recorded = _train(run, "--task", task, "--model", str(tiny_model_dir), "--data", str(data), *squad_tiny)["dev"]
    dev = data / f"dev-{'v2.0' if version_2 else 'v1.1'}.json"
    output = tmp_path / "predictions.json"
    assert main(["predict", str(run), "--input", str(dev), "--output", str(output)]) == 0
    predictions = json.loads(output.read_text())  # the official format: {id: answer}
    assert predictions == json.loads((run / "predictions.json").read_text())
    again = squad_evaluate(dev, predictions)
    for name in ("exact", "f1") if version_2 else ("exact_match", "f1"):
        assert again[name] == recorded[name], name
    # questions without answers; rows for .jsonl (v2.0: with the null odds, as --na-probs takes them)
    questions = json.loads(dev.read_text())
    for paragraph in questions["data"][0]["paragraphs"]:
        for qa in paragraph["qas"]:
            for key in ("answers", "is_impossible", "plausible_answers"):
                qa.pop(key, None)
    (tmp_path / "questions.json").write_text(json.dumps(questions), encoding="utf-8")
    rows = predict_file(run, tmp_path / "questions.json", tmp_path / "answers.jsonl").records
    assert {row["id"]: row["answer"] for row in rows} == predictions
    assert _read_jsonl(tmp_path / "answers.jsonl") == rows
    if version_2:
        odds = json.loads((run / "null_odds.json").read_text())
        assert {row["id"]: row["null_odds"] for row in rows} == pytest.approx(odds, abs=1e-5)


# ------------------------------------------------------------------------- refusals and bad input
def test_nothing_is_overwritten_without_overwrite(reviews_run, tmp_path, capsys):
    run, data, _ = reviews_run
    output = tmp_path / "labels.csv"
    output.write_text("keep me\n")
    capsys.readouterr()
    assert main(["predict", str(run), "--input", str(data / "dev.csv"), "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert f"--output {output} already exists; pass --overwrite" in error and output.read_text() == "keep me\n"
    assert main(["predict", str(run), "--input", str(data / "dev.csv"), "--output", str(output), "--overwrite"]) == 0
    assert len(_read_csv(output)) == 12
    assert [p.name for p in tmp_path.iterdir()] == ["labels.csv"]  # atomic: no temporary file left behind


BAD_INPUT = [
    (
        "new.csv",
        'review\n"Good film."\n"A","B"\n',
        r"new.csv, line 3: 2 fields but the header \(line 1\) has 1; quote a text that holds a comma",
    ),
    ("new.csv", "review\nGood film.\n\n", None),  # a blank line is skipped, as in training data
    ("new.csv", "review\nGood film.\n \n", r"new.csv, line 3, column 'review': empty text"),
    (
        "new.jsonl",
        '{"review": "Good film."}\n{"review": ""}\n',
        r"new.jsonl, line 2, column 'review': empty text; fill it in or remove the row",
    ),
    ("new.jsonl", '{"review": "Good film."}\n{"review": "x"\n', r"new.jsonl, line 2: not valid JSON"),
    ("new.csv", b"review\nGood film.\ncaf\xe9\n", r"new.csv, line 3, column 'review': byte 0xe9 .*not UTF-8.*iconv"),
    (
        "new.csv",
        "text\nGood film.\n",
        r"new.csv, line 1 \(the header\): no column 'review' \(columns: text\); set task_options.text_column to "
        r"one of them",
    ),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_INPUT)
def test_bad_input_names_the_file_line_and_fix_and_writes_nothing(
    name, content, message, reviews_run, tmp_path, capsys
):
    run, _, _ = reviews_run
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    output = tmp_path / "out.jsonl"
    capsys.readouterr()
    code = main(["predict", str(run), "--input", str(path), "--output", str(output)])
    if message is None:
        assert code == 0 and len(_read_jsonl(output)) == 1
        return
    assert code == 2 and not output.exists()
    assert len(__import__("re").findall(message, capsys.readouterr().err)) == 1


def test_a_column_named_otherwise_is_named_by_the_task_option(reviews_run, tmp_path, capsys):
    run, _, _ = reviews_run
    (tmp_path / "new.csv").write_text("text\nGood film.\nA sad movie.\n", encoding="utf-8")
    assert (
        main(
            [
                "predict",
                str(run),
                "--input",
                str(tmp_path / "new.csv"),
                "--output",
                str(tmp_path / "out.csv"),
                "task_options.text_column=text",
            ]
        )
        == 0
    )
    assert [row["text"] for row in _read_csv(tmp_path / "out.csv")] == ["Good film.", "A sad movie."]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--output", "{tmp}/out.txt"], r"the format follows the suffix, which must be one of .jsonl, .csv, .json"),
        (
            ["--output", "{tmp}/out.csv", "learning_rate=1"],
            r"predict cannot change learning_rate\. It may change "
            "eval_batch_size, torch_dtype, mixed_precision, "
            "task_options",
        ),
        (["--output", "{tmp}/out.csv", "data=somewhere"], r"predict cannot change data"),
        (["--input", "{tmp}/missing.csv", "--output", "{tmp}/out.csv"], r"--input .*missing.csv: no such file"),
    ],
)
def test_refusals_before_any_work(arguments, message, reviews_run, tmp_path, capsys):
    run, data, _ = reviews_run
    arguments = [item.format(tmp=tmp_path) for item in arguments]
    if "--input" not in arguments:
        arguments = ["--input", str(data / "dev.csv"), *arguments]
    capsys.readouterr()
    assert main(["predict", str(run), *arguments]) == 2
    assert __import__("re").search(message, capsys.readouterr().err)
    assert not any(tmp_path.iterdir())


def test_an_unfinished_run_is_refused(tmp_path, capsys):
    (tmp_path / "new.csv").write_text("review\nGood film.\n")
    assert (
        main(
            [
                "predict",
                str(tmp_path / "nothing"),
                "--input",
                str(tmp_path / "new.csv"),
                "--output",
                str(tmp_path / "out.csv"),
            ]
        )
        == 2
    )
    assert "not a finished run (no metrics.json); predict needs its adapter" in capsys.readouterr().err


# ------------------------------------------------------------------------- the hooks
def test_every_built_in_task_predicts():
    for name in list_tasks():
        task = type(get_task(name))
        assert task.prediction_dataset is not TaskBase.prediction_dataset, name
        assert task.prediction_records is not TaskBase.prediction_records, name


def test_a_task_without_the_hooks_says_it_cannot_predict():
    from test_task_protocol import _Minimal

    with pytest.raises(NotImplementedError, match="task minimal does not support predict"):
        _Minimal().prediction_dataset(None, None, None)
    with pytest.raises(NotImplementedError, match="task minimal does not support predict"):
        _Minimal().prediction_records({}, None)
    assert _Minimal().for_prediction(None) is not None


def test_a_causal_prediction_batch_needs_no_forward_pass():
    task = configure_task("causal_lm", {})
    batch = {"input_ids": torch.ones(2, 3, dtype=torch.long), "labels": torch.full((2, 3), -100)}
    assert torch.equal(task.batch_outputs(None, batch)["completion_loss"], torch.zeros(2, 2))


def test_a_task_predicts_through_its_own_hooks():
    """A task that overrides the prediction hooks predicts through them; one that does not refuses to predict."""
    from test_task_protocol import PlainParity

    from adalora_scores.tasks import Predictions

    class PlainPredicting(PlainParity):
        def prediction_dataset(self, path, tokenizer, config):
            return [path]

        def prediction_records(self, outputs, dataset):
            return Predictions([{"path": str(dataset[0]), "logits": outputs["logits"].tolist()}])

    task = PlainPredicting().for_prediction(None)
    dataset = task.prediction_dataset("in.csv", None, None)
    assert task.prediction_records({"logits": torch.ones(1)}, dataset).records == [{"path": "in.csv", "logits": [1.0]}]
    plain = PlainParity()
    assert plain.for_prediction(None) is plain
    with pytest.raises(NotImplementedError, match="task test_plain_parity does not support predict"):
        plain.prediction_dataset("in.csv", None, None)
