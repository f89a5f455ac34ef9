"""The ``adalora-scores`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

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


def _read_mapping(path: str, what: str, kind: type | tuple[type, ...]) -> dict:
    """A JSON object file of question id → value, with errors that name the file and the first bad entry."""
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist.")
    try:
        loaded = json.loads(file.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}).") from None
    expected = "text" if kind is str else "number"
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a JSON object mapping question id to {expected}.")
    for key, value in loaded.items():
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"{path}: id {key!r} maps to {value!r}; expected question id to {expected}.")
    return loaded


def _evaluate_squad(args: argparse.Namespace) -> int:
    from adalora_scores.engine.run_folder import atomic_write
    from adalora_scores.metrics.squad import evaluate

    if not Path(args.data).is_file():
        raise FileNotFoundError(f"dataset file {args.data} does not exist (expected e.g. dev-v2.0.json).")
    predictions = _read_mapping(args.predictions, "predictions", str)
    na_probs = _read_mapping(args.na_probs, "no-answer probabilities", (int, float)) if args.na_probs else None
    result = evaluate(args.data, predictions, na_probs, args.na_prob_thresh, version=args.version)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        atomic_write(Path(args.output), text + "\n")
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
    train.add_argument(
        "--task", required=True, help="cola sst2 mrpc qqp stsb mnli qnli rte wnli, or squad (v1.1) / squad_v2"
    )
    train.add_argument("--score", help="registered score (default sensitivity)")
    train.add_argument("--model", help="Hub name or local folder (default microsoft/deberta-v3-base)")
    train.add_argument(
        "--data", help="local data folder (GLUE TSVs or CSV/JSON; SQuAD train-/dev-v*.json); default: the Hub"
    )
    train.add_argument("--output", required=True, help="run folder to create")
    train.add_argument("--seed", type=int)
    train.add_argument("--config", help="YAML preset path or name, e.g. presets/paper-glue.yaml or paper-glue")
    train.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="any config field, e.g. learning_rate=1e-3")
    train.set_defaults(run=_train)
    squad = commands.add_parser(
        "evaluate-squad",
        help="official SQuAD v1.1/v2.0 EM and F1 of a predictions file",
        description="The official SQuAD evaluation rules (v2.0 when the dataset has unanswerable questions).",
    )
    squad.add_argument("--data", required=True, help="official dataset JSON, e.g. dev-v2.0.json")
    squad.add_argument("--predictions", required=True, help="JSON object: question id -> answer text")
    squad.add_argument("--na-probs", help="v2.0: JSON object: question id -> no-answer score (e.g. null_odds.json)")
    squad.add_argument("--na-prob-thresh", type=float, default=1.0, help="no answer when na_prob > this (1.0)")
    squad.add_argument("--version", choices=("1.1", "2.0"), help="force the rules (default: from the dataset)")
    squad.add_argument("--output", help="also write the metrics JSON here")
    squad.set_defaults(run=_evaluate_squad)
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
