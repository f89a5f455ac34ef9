"""The ``adalora-scores`` command line."""

from __future__ import annotations

import argparse
import sys

import adalora_scores


def _scores(args: argparse.Namespace) -> int:
    for name in adalora_scores.list_scores():
        doc = (adalora_scores.get_score_class(name).__doc__ or "").strip().splitlines()[0]
        print(f"{name:14s} {doc}")
    return 0


def _quickstart(args: argparse.Namespace) -> int:
    from adalora_scores import quickstart

    quickstart.main(steps=args.steps, seed=args.seed)
    return 0


def _train(args: argparse.Namespace) -> int:
    from adalora_scores.config import resolve_config
    from adalora_scores.engine.train import train

    flags = {"task": args.task, "score": args.score, "model": args.model, "data": args.data, "seed": args.seed}
    config = resolve_config(args.config, args.task, flags, args.overrides)
    train(config, args.output, overwrite=args.overwrite)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adalora-scores", description="AdaLoRA with pluggable importance scores.")
    parser.add_argument("--version", action="version", version=adalora_scores.__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("scores", help="list the registered importance scores").set_defaults(run=_scores)
    train = commands.add_parser(
        "train",
        help="fine-tune one task with AdaLoRA and a chosen score",
        description="Fine-tune with AdaLoRA. Values: preset defaults < preset task entry < flags < key=value.",
    )
    train.add_argument("--task", required=True, help="GLUE task: cola sst2 mrpc qqp stsb mnli qnli rte wnli")
    train.add_argument("--score", help="registered score (default sensitivity)")
    train.add_argument("--model", help="Hub name or local folder (default microsoft/deberta-v3-base)")
    train.add_argument("--data", help="local data folder (original GLUE TSVs or CSV/JSON); default: the Hub")
    train.add_argument("--output", required=True, help="run folder to create")
    train.add_argument("--seed", type=int)
    train.add_argument("--config", help="YAML preset path or name, e.g. presets/paper-glue.yaml or paper-glue")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="any config field, e.g. learning_rate=1e-3")
    train.set_defaults(run=_train)
    quick = commands.add_parser("quickstart", help="every score on a tiny offline model (a workflow demo)")
    quick.add_argument("--steps", type=int, default=150)
    quick.add_argument("--seed", type=int, default=0)
    quick.set_defaults(run=_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    if stray or (extra and args.command != "train"):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)} (config values are given as key=value)")
    if args.command == "train":
        args.overrides = [*args.overrides, *extra]
    try:
        return args.run(args)
    except (ValueError, KeyError, FileNotFoundError, FileExistsError, TypeError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"adalora-scores {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
