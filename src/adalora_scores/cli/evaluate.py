"""Reload a finished run's adapter with stock PEFT and evaluate it on the run's splits again; key=value may change
data, eval_batch_size, max_eval_samples, torch_dtype, mixed_precision and task_options, nothing else."""

from __future__ import annotations

import argparse

from adalora_scores.cli.common import add_run_folder_arguments

HELP = "evaluate a finished run's adapter again (e.g. with task_options.generate=true)"
EXAMPLES = """  adalora-scores evaluate runs/mrpc-fisher
  adalora-scores evaluate runs/math-fisher --output runs/math-fisher/generated task_options.generate=true"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", help="folder for metrics.json and the task's files (default RUN/evaluation)")
    add_run_folder_arguments(parser, overwrite="the files of an earlier evaluation", example="eval_batch_size=16")


def run(args: argparse.Namespace) -> int:
    from adalora_scores.engine.evaluate import evaluate_run

    evaluate_run(args.run_folder, args.output, args.overrides, overwrite=args.overwrite)
    return 0
