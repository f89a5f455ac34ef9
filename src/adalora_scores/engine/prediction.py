"""``adalora-scores predict RUN --input FILE --output FILE``: a finished run's adapter applied to new data.

The run loads as ``evaluate`` loads it (``engine/evaluate.py``): its config with the allowed changes, its plugins,
the base model with the task's head, the adapter by stock PEFT and the tokenizer saved with it. The task does the
rest through its hooks (``tasks/base.py``): :meth:`~adalora_scores.tasks.TaskBase.for_prediction` (e.g. the label
mapping of ``labels.json``), :meth:`~adalora_scores.tasks.TaskBase.prediction_dataset` (the input file, checked
before the model loads, with the file and line of any error), the batched outputs and generations of evaluation, and
:meth:`~adalora_scores.tasks.TaskBase.prediction_records` (one record per input row, in input order).

The output's format follows its suffix: ``.jsonl`` (one JSON object per line), ``.csv`` (a header of every column
any record has; nested values as JSON) or ``.json`` (an array of the records, or the task's own document: SQuAD's
``{id: answer}``). An existing output is replaced only with ``overwrite``, and it is written whole or not at all.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from adalora_scores.runs.atomic import atomic_write
from adalora_scores.tasks.base import Predictions

__all__ = ["OUTPUT_SUFFIXES", "PREDICTION_FIELDS", "predict_file", "predictions_text"]

PREDICTION_FIELDS = ("eval_batch_size", "torch_dtype", "mixed_precision", "task_options")
"""The config values ``predict`` may change: how the input is batched, the dtype, and the task's options (e.g.
``task_options.text_column`` where the input names its column otherwise, ``task_options.max_new_tokens``)."""
OUTPUT_SUFFIXES = (".jsonl", ".csv", ".json")


def _cell(value: Any) -> Any:
    """A CSV cell: nested values as JSON, None as an empty cell."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return "" if value is None else value


def predictions_text(predictions: Predictions, suffix: str) -> str:
    """The text of an output file with ``suffix`` (one of :data:`OUTPUT_SUFFIXES`; see the module docstring)."""
    records = predictions.records
    if suffix == ".json":
        document = records if predictions.document is None else predictions.document
        return json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n"
    if suffix == ".jsonl":
        return "".join(json.dumps(record, ensure_ascii=False, default=str) + "\n" for record in records)
    columns = list(dict.fromkeys(name for record in records for name in record))
    stream = io.StringIO(newline="")
    writer = csv.DictWriter(stream, columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows({name: _cell(value) for name, value in record.items()} for record in records)
    return stream.getvalue()


def predict_file(
    run: str | Path, input: str | Path, output: str | Path, overrides: list[str] | None = None, overwrite: bool = False
) -> Predictions:
    """Predict every row of ``input`` with the finished run ``run`` and write ``output`` (its format by its suffix);
    returns the predictions. ``overrides`` are ``key=value`` changes of :data:`PREDICTION_FIELDS`.

    Raises:
        FileExistsError: ``output`` exists and ``overwrite`` is off.
        ValueError: an unsupported output suffix, a refused override, or bad input (its file, line and fix).
        NotImplementedError: the run's task cannot predict.
    """
    from adalora_scores.engine.data import make_loader
    from adalora_scores.engine.evaluate import dataset_outputs
    from adalora_scores.engine.finished_run import load_run_model, open_run, run_tokenizer

    run, input, output = Path(run), Path(input), Path(output)
    if output.suffix not in OUTPUT_SUFFIXES:
        raise ValueError(
            f"--output {output}: the format follows the suffix, which must be one of "
            f"{', '.join(OUTPUT_SUFFIXES)} (got {output.suffix or 'none'!r})."
        )
    if output.exists() and not overwrite:
        raise FileExistsError(
            f"--output {output} already exists; pass --overwrite to replace it, or give another --output."
        )
    if not input.is_file():
        raise FileNotFoundError(f"--input {input}: no such file.")
    config, task = open_run(run, overrides or [], "predict", PREDICTION_FIELDS)
    task = task.for_prediction(run)
    tokenizer = run_tokenizer(run)
    dataset = task.prediction_dataset(input, tokenizer, config)  # bad input stops here, before the model loads
    accelerator, model = load_run_model(run, config, task)
    loader = make_loader(dataset, tokenizer, config.eval_batch_size, shuffle=False, seed=config.seed)
    outputs = dataset_outputs(
        task, model, dataset, accelerator.prepare(loader), tokenizer, accelerator, config, f"predict {input.name}"
    )
    predictions = task.prediction_records(outputs, dataset)
    if accelerator.is_main_process:
        atomic_write(output, predictions_text(predictions, output.suffix))
    accelerator.print(f"{task.name}: {len(predictions.records)} predictions for {input} written to {output}")
    return predictions
