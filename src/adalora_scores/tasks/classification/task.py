"""The ``classification`` task: any labelled text, one text column or a pair, with its options in the config.

Options (``task_options`` in a preset or sweep file, or ``task_options.NAME=value`` on the command line) are listed
in :class:`ClassificationOptions`. The data comes from exactly one of:

* ``--data FOLDER`` holding ``train.*`` and ``dev.*`` (or ``validation.*``), each .csv, .tsv, .json, .jsonl or
  .parquet;
* ``task_options.train_file`` and ``task_options.dev_file``;
* a Hub dataset: ``task_options.hub_dataset`` (and ``hub_config``, ``train_split``, ``dev_split``).

Labels come from the data. Classification: each distinct value of the label column (text, or whole numbers) is a
class; the class ids follow the sorted labels (numerically when every label is a whole number, else as text), so
the same data always gives the same mapping. Regression (``task_options.regression=true``; never inferred): the
label is a number and the model has one output. A number with a fraction in a classification label column is
refused with a pointer to ``regression=true``.

The mapping is written to the run folder as ``labels.json`` (:func:`read_labels`), and set as the model's
``id2label``/``label2id``; :func:`base_model_for_run` builds the base model with that head, for
``PeftModel.from_pretrained``, and ``predict`` labels new rows with it (:meth:`ClassificationTask.for_prediction`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch

from adalora_scores.metrics.classification import classification_metrics, regression_metrics
from adalora_scores.tasks.base import Predictions, TaskBase, register_task
from adalora_scores.tasks.classification.options import EXAMPLE, ClassificationOptions
from adalora_scores.tasks.data import EncodedDataset, Example, TaskData, TextsToLabel, label_records
from adalora_scores.tasks.tables import (
    SUFFIXES,
    Record,
    Table,
    local_data_files,
    read_hub_tables,
    read_table,
)

__all__ = [
    "CLASSIFICATION_TASK",
    "LABELS_FILE",
    "ClassificationTask",
    "base_model_for_run",
    "read_labels",
]

LABELS_FILE = "labels.json"
"""In the run folder: ``{"regression", "label_column", "labels", "id2label", "label2id"}``."""


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


def _as_number(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _label_text(value: Any, record: Record, column: str) -> str:
    """A class label as text: integers (and whole floats, as Parquet or JSON may store them) as digits."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        raise ValueError(f"{record.where}, column {column!r}: label {value!r} is not a single value.")
    return str(value).strip()


def _sorted_labels(labels: set[str]) -> tuple[str, ...]:
    """Numerically when every label is a whole number (so "10" follows "9"), else as text."""
    if all(_as_number(label) is not None and float(label).is_integer() for label in labels):
        return tuple(sorted(labels, key=float))
    return tuple(sorted(labels))


@dataclass
class ClassificationTask(TaskBase):
    """Sequence classification or regression on the user's own data (module docstring).

    The registered instance has no options; :meth:`with_options` returns the task of one run, which ``load`` fills
    with the label mapping that ``load_model``, ``evaluate`` and ``run_files`` then use.
    """

    options: ClassificationOptions | None = None
    labels: tuple[str, ...] | None = None
    """The class labels in id order, known after ``load`` (``()`` for regression)."""
    name: str = "classification"
    eval_splits: tuple[str, ...] = ("dev",)
    modules_to_save: ClassVar[tuple[str, ...]] = ("classifier", "pooler")
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    group_key: ClassVar[str | None] = None

    @property
    def main_metric(self) -> str:
        if self.options is None:
            return "accuracy"
        return self.options.main_metric or ("pearson" if self.options.regression else "accuracy")

    @property
    def regression(self) -> bool:
        return self.options is not None and self.options.regression

    def with_options(self, options: Mapping[str, Any]) -> ClassificationTask:
        """A new task for one run, with validated ``options`` (see :class:`ClassificationOptions`)."""
        return ClassificationTask(ClassificationOptions.parse(options), name=self.name)

    def _need_options(self) -> ClassificationOptions:
        if self.options is None:
            raise ValueError(f"task classification needs task options; {EXAMPLE}")
        return self.options

    # ---------------------------------------------------------------------------------------------------- data
    def expected_data(self) -> str:
        return (
            f"train and dev files ({', '.join(SUFFIXES)}) in a --data folder (train.*, dev.* or "
            "validation.*), or task_options.train_file and task_options.dev_file, or task_options.hub_dataset; "
            "with the columns named by task_options.text_column (and text_pair_column) and label_column (default "
            "label)"
        )

    def _local_files(self, data: str | Path | None) -> tuple[Path, Path]:
        options = self._need_options()
        return local_data_files(data, options.train_file, options.dev_file, "classification", self.expected_data())

    def _hub_tables(self) -> tuple[Table, Table]:
        options = self._need_options()
        splits = {"train_split": options.train_split, "dev_split": options.dev_split}
        train, dev = read_hub_tables(options.hub_dataset, options.hub_config, splits)  # type: ignore[arg-type]
        return train, dev

    def _rows(self, table: Table, labelled: bool = True) -> list[tuple[Record, str, str | None, Any]]:
        """(record, text, second text, raw label) of every record; missing columns and empty texts are errors.
        Without ``labelled`` (texts to predict) the label column is not read, and the raw label is None."""
        options = self._need_options()
        text_columns = [options.text_column, *([options.text_pair_column] if options.text_pair_column else [])]
        wanted = [*text_columns, *([options.label_column] if labelled else [])]
        if not table.records:
            raise ValueError(f"{table.path} holds no examples; expected a header and one example per line.")
        if table.columns is not None:
            missing = [c for c in wanted if c not in table.columns]
            if missing:
                place = f"{table.path}, line 1 (the header)" if table.path.suffix in (".csv", ".tsv") else table.path
                raise ValueError(
                    f"{place}: no column {missing[0]!r} (columns: {', '.join(table.columns)}); set "
                    f"{self._option_for(missing[0])} to one of them."
                )
        rows = []
        for record in table.records:
            for column in wanted:
                if column not in record.values:
                    raise ValueError(
                        f"{record.where}: no column {column!r} (it has {', '.join(record.values)}); "
                        f"add it, or set {self._option_for(column)} to the right name."
                    )
            for column in wanted:
                if _is_empty(record.values[column]):
                    what = "label" if column == options.label_column else "text"
                    raise ValueError(f"{record.where}, column {column!r}: empty {what}; fill it in or remove the row.")
            texts = [str(record.values[c]) for c in text_columns]
            label = record.values[options.label_column] if labelled else None
            rows.append((record, texts[0], texts[1] if len(texts) > 1 else None, label))
        return rows

    def _option_for(self, column: str) -> str:
        options = self._need_options()
        for name in ("text_column", "text_pair_column", "label_column"):
            if getattr(options, name) == column:
                return f"task_options.{name}"
        return "the task option"

    def _regression_examples(self, rows: list[tuple[Record, str, str | None, Any]], column: str) -> list[Example]:
        examples = []
        for record, text_a, text_b, value in rows:
            number = None if isinstance(value, bool) else _as_number(str(value))
            if number is None:
                raise ValueError(
                    f"{record.where}, column {column!r}: {value!r} is not a number; a regression "
                    "target (task_options.regression=true) must be a finite number."
                )
            examples.append(Example(text_a, text_b, number))
        return examples

    def _label_mapping(self, rows: list[tuple[Record, str, str | None, Any]], table: Table) -> tuple[str, ...]:
        column = self._need_options().label_column
        seen: dict[str, Record] = {}
        for record, _, _, value in rows:
            text = _label_text(value, record, column)
            number = _as_number(text)
            if number is not None and not number.is_integer():
                raise ValueError(
                    f"{record.where}, column {column!r}: label {value!r} is a number with a fraction; "
                    "for a numeric target pass task_options.regression=true, or use whole-number or "
                    "text class labels."
                )
            seen.setdefault(text, record)
        if len(seen) < 2:
            ((label, first),) = seen.items()
            raise ValueError(
                f"{table.path}: every example has the label {label!r} in column {column!r} (from "
                f"{first.where.rsplit(', ', 1)[-1]} on): one class cannot be learned; check "
                "task_options.label_column, or add examples of the other classes."
            )
        return _sorted_labels(set(seen))

    def _class_examples(
        self, rows: list[tuple[Record, str, str | None, Any]], labels: tuple[str, ...], train: bool
    ) -> list[Example]:
        column, index = self._need_options().label_column, {label: i for i, label in enumerate(labels)}
        examples = []
        for record, text_a, text_b, value in rows:
            text = _label_text(value, record, column)
            if text not in index:
                where = "" if train else " of the training data"
                raise ValueError(
                    f"{record.where}, column {column!r}: label {text!r} is not one of the labels"
                    f"{where} ({', '.join(labels)}); fix the label, or add training examples of it."
                )
            examples.append(Example(text_a, text_b, index[text]))
        return examples

    def load(self, data: str | Path | None) -> TaskData:
        """Read the train and dev data, check it, and fix the label mapping (``self.labels``)."""
        options = self._need_options()
        if options.hub_dataset is not None:
            if data is not None:
                raise ValueError(f"--data {data} and task_options.hub_dataset both name data; keep one.")
            train_table, dev_table = self._hub_tables()
        else:
            train_path, dev_path = self._local_files(data)
            train_table, dev_table = read_table(train_path), read_table(dev_path)
        train_rows, dev_rows = self._rows(train_table), self._rows(dev_table)
        if options.regression:
            self.labels = ()
            train = self._regression_examples(train_rows, options.label_column)
            return TaskData(train, {"dev": self._regression_examples(dev_rows, options.label_column)})
        labels = self._label_mapping(train_rows, train_table)
        if options.main_metric == "matthews_correlation" and len(labels) != 2:
            raise ValueError(
                f"task_options.main_metric=matthews_correlation needs two classes; {train_table.path} "
                f"has {len(labels)} ({', '.join(labels)}); use accuracy or macro_f1."
            )
        self.labels = labels
        return TaskData(
            self._class_examples(train_rows, labels, True), {"dev": self._class_examples(dev_rows, labels, False)}
        )

    # --------------------------------------------------------------------------------------------------- model
    def _mapping(self) -> tuple[str, ...]:
        if self.labels is None:
            raise RuntimeError("the label mapping is known only after load(); call task.load(data) first.")
        return self.labels

    def head_config(self) -> dict[str, Any]:
        """``from_pretrained`` keywords for this head: ``num_labels``, ``problem_type`` and the label names."""
        labels = self._mapping()
        if self.regression:
            return {"num_labels": 1, "problem_type": "regression"}
        names = {"id2label": dict(enumerate(labels)), "label2id": {label: i for i, label in enumerate(labels)}}
        return {"num_labels": len(labels), "problem_type": "single_label_classification", **names}

    def load_model(self, name: str, **model_options: Any) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(
            name, ignore_mismatched_sizes=True, **self.head_config(), **model_options
        )

    def encode(self, examples: list[Example], tokenizer: Any, config: Any, *, train: bool) -> EncodedDataset:
        return EncodedDataset(examples, tokenizer, config.max_seq_length)

    def evaluate(
        self, outputs: dict[str, torch.Tensor], dataset: EncodedDataset, config: Any
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Accuracy and macro-F1 (and MCC for two classes), or Pearson, Spearman and MSE; no prediction files."""
        logits = outputs["logits"]
        if self.regression:
            return regression_metrics(logits.squeeze(-1).tolist(), dataset.labels), {}
        labels = self._mapping()
        return classification_metrics(logits.argmax(-1).tolist(), dataset.labels, len(labels)), {}

    # ----------------------------------------------------------------------------------------------- predict
    def for_prediction(self, run_folder: Path) -> ClassificationTask:
        """The task with the run's label mapping and kind (classification or regression) from ``labels.json``."""
        saved = read_labels(run_folder)
        options = dataclasses.replace(self._need_options(), regression=bool(saved["regression"]))
        return ClassificationTask(options, labels=tuple(saved["labels"]), name=self.name)

    def prediction_dataset(self, path: Path, tokenizer: Any, config: Any) -> TextsToLabel:
        """The rows of ``path`` (any of :data:`SUFFIXES`), with the text column (and pair column) named as in
        training or by ``task_options``; a label column is not needed, and not read."""
        rows = self._rows(read_table(path), labelled=False)
        texts, fields = [(text_a, text_b) for _, text_a, text_b, _ in rows], [dict(r.values) for r, *_ in rows]
        return TextsToLabel(texts, fields, tokenizer, config.max_seq_length)

    def prediction_records(self, outputs: dict[str, torch.Tensor], dataset: TextsToLabel) -> Predictions:
        """Each row with ``prediction`` (a label of ``labels.json``) and its class probabilities, or the value."""
        return Predictions(label_records(dataset.fields, outputs["logits"], self._mapping()))

    def run_files(self) -> dict[str, Any]:
        """``labels.json`` for the run folder: the label mapping evaluation used and reloading needs."""
        labels = self._mapping()
        kind = {"regression": self.regression, "label_column": self._need_options().label_column}
        id2label = {str(i): label for i, label in enumerate(labels)}
        label2id = {label: i for i, label in enumerate(labels)}
        return {LABELS_FILE: {**kind, "labels": list(labels), "id2label": id2label, "label2id": label2id}}


def read_labels(run_folder: str | Path) -> dict[str, Any]:
    """The ``labels.json`` of a finished ``classification`` run."""
    from adalora_scores.runs.files import read_json

    path = Path(run_folder) / LABELS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; only finished classification runs have a label mapping.")
    return read_json(path)


def base_model_for_run(run_folder: str | Path, model: str | None = None) -> torch.nn.Module:
    """The base model of a ``classification`` run (``model``, default the run's ``config.yaml`` model) with the
    run's head: the right ``num_labels`` and its label names. Load the adapter onto it with
    ``PeftModel.from_pretrained(base, run_folder / "adapter")``."""
    from adalora_scores.runs.files import read_config

    task = ClassificationTask(ClassificationOptions(text_column="-")).for_prediction(Path(run_folder))
    return task.load_model(model or read_config(Path(run_folder))["model"])


CLASSIFICATION_TASK = register_task(ClassificationTask())
