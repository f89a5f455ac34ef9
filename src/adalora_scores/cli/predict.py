"""Reload a run's adapter with stock PEFT and predict every row of --input: a label and class probabilities (or a
value), SQuAD answers, or causal_lm generations, one record per row in input order. key=value may change
eval_batch_size, torch_dtype, mixed_precision and task_options, nothing else (e.g. task_options.text_column=COLUMN,
task_options.max_new_tokens=N)."""

from __future__ import annotations

import argparse

from adalora_scores.cli.common import add_run_folder_arguments

HELP = "label, score, answer or generate for new data with a finished run's adapter"
EXAMPLES = """  adalora-scores predict runs/reviews-fisher --input reviews/new.csv --output reviews-labelled.csv
  adalora-scores predict runs/math --input prompts.jsonl --output answers.jsonl task_options.max_new_tokens=64"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    input_help = (
        "rows to predict, read as the task reads its data (csv, tsv, json, jsonl, parquet; SQuAD: the official JSON); "
        "labels not needed"
    )
    parser.add_argument("--input", required=True, metavar="FILE", help=input_help)
    output_help = "the predictions, in the format of the suffix: .jsonl, .csv or .json"
    parser.add_argument("--output", required=True, metavar="FILE", help=output_help)
    add_run_folder_arguments(parser, overwrite="an existing --output file", example="eval_batch_size=16")


def run(args: argparse.Namespace) -> int:
    from adalora_scores.engine.prediction import predict_file

    predict_file(args.run_folder, args.input, args.output, args.overrides, overwrite=args.overwrite)
    return 0
