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
from adalora_scores.tasks.base import TaskBase, register_task
from adalora_scores.tasks.data import EncodedDataset, Example, TaskData
from adalora_scores.tasks.files import read_table, read_utf8

__all__ = ["GLUE_TASKS", "GlueTask", "load_glue"]

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

    def expected_data(self) -> str:
        """The expected original-layout description, for error messages."""
        files = ["train.tsv", *(f"{split}.tsv" for split in self.eval_splits)]
        if not self.has_header:
            return f"{', '.join(files)} without a header; sentence in column {self.tsv_columns[0]}, label in column 1"
        return f"{', '.join(files)} with a header holding {', '.join(map(str, (*self.tsv_columns, self.tsv_label)))}"


_BINARY = ("0", "1")
_NLI2 = ("entailment", "not_entailment")
_PAIR = ("sentence1", "sentence2")
_ACC = ("accuracy", "accuracy")
_TASKS = [
    GlueTask("cola", ("sentence",), (3,), 1, _BINARY, "matthews", "matthews_correlation", has_header=False),
    GlueTask("sst2", ("sentence",), ("sentence",), "label", _BINARY, *_ACC),
    GlueTask("mrpc", _PAIR, ("#1 String", "#2 String"), "Quality", _BINARY, "accuracy_f1", "accuracy"),
    GlueTask("qqp", ("question1", "question2"), ("question1", "question2"), "is_duplicate", _BINARY, "accuracy_f1",
             "accuracy"),
    GlueTask("stsb", _PAIR, _PAIR, "score", (), "pearson_spearman", "corr"),
    GlueTask("mnli", ("premise", "hypothesis"), _PAIR, "gold_label", ("entailment", "neutral", "contradiction"), *_ACC,
             eval_splits=("dev_matched", "dev_mismatched"),
             hub_splits=("validation_matched", "validation_mismatched")),
    GlueTask("qnli", ("question", "sentence"), ("question", "sentence"), "label", _NLI2, *_ACC),
    GlueTask("rte", _PAIR, _PAIR, "label", _NLI2, *_ACC),
    GlueTask("wnli", _PAIR, _PAIR, "label", _BINARY, *_ACC),
]  # fmt: skip
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


def _read_tsv(task: GlueTask, path: Path) -> list[Example]:
    rows = list(csv.reader(io.StringIO(read_utf8(path), newline=""), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise ValueError(f"{path} is empty; expected {task.expected_data()}.")
    if task.has_header:
        header, rows = rows[0], rows[1:]
        wanted = (*task.tsv_columns, task.tsv_label)
        missing = [c for c in wanted if c not in header]
        if missing:
            raise ValueError(
                f"{path}: missing column(s) {missing} (header: {header}); expected the original GLUE layout: "
                f"{task.expected_data()}."
            )
        index = [header.index(c) for c in wanted]
    else:
        index = [*task.tsv_columns, task.tsv_label]
    examples = []
    for line, row in enumerate(rows, start=2 if task.has_header else 1):
        if len(row) <= max(index):
            raise ValueError(f"{path}, line {line}: {len(row)} columns, expected at least {max(index) + 1}.")
        texts = [row[i] for i in index[:-1]]
        label = _label(task, row[index[-1]], f"{path}, line {line}, column {task.tsv_label}")
        examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, label))
    return examples


def _read_named(task: GlueTask, path: Path) -> list[Example]:
    """CSV, JSON or JSONL with named columns; errors name the line of the record (``adalora_scores.tasks.files``)."""
    examples = []
    for record in read_table(path).records:
        missing = [c for c in (*task.columns, "label") if c not in record.values]
        if missing:
            raise ValueError(
                f"{record.where}: missing column(s) {missing}; {task.name} files with named columns need "
                f"{', '.join((*task.columns, 'label'))}."
            )
        texts = [str(record.values[c]) for c in task.columns]
        label = _label(task, record.values["label"], f"{record.where}, column 'label'")
        examples.append(Example(texts[0], texts[1] if len(texts) > 1 else None, label))
    return examples


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
    examples = _read_tsv(task, path) if path.suffix == ".tsv" else _read_named(task, path)
    if not examples:
        raise ValueError(f"{path} holds no examples.")
    return examples


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
