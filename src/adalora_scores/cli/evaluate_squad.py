"""Exact match and F1 of a predictions file by the official SQuAD evaluation rules (v2.0 when the dataset has
unanswerable questions), printed as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "official SQuAD v1.1/v2.0 EM and F1 of a predictions file"
EXAMPLES = """  adalora-scores evaluate-squad --data dev-v1.1.json --predictions predictions.json
  adalora-scores evaluate-squad --data dev-v2.0.json --predictions predictions.json --na-probs null_odds.json"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="official dataset JSON, e.g. dev-v2.0.json")
    parser.add_argument("--predictions", required=True, help="JSON object: question id -> answer text")
    parser.add_argument("--na-probs", help="v2.0: JSON object: question id -> no-answer score (e.g. null_odds.json)")
    parser.add_argument("--na-prob-thresh", type=float, default=1.0, help="no answer when na_prob > this (1.0)")
    parser.add_argument("--version", choices=("1.1", "2.0"), help="force the rules (default: from the dataset)")
    parser.add_argument("--output", help="also write the metrics JSON here")


def read_mapping(path: str, what: str, kind: type | tuple[type, ...]) -> dict:
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


def run(args: argparse.Namespace) -> int:
    from adalora_scores.metrics.squad import evaluate
    from adalora_scores.runs.files import atomic_write

    if not Path(args.data).is_file():
        raise FileNotFoundError(f"dataset file {args.data} does not exist (expected e.g. dev-v2.0.json).")
    predictions = read_mapping(args.predictions, "predictions", str)
    na_probs = read_mapping(args.na_probs, "no-answer probabilities", (int, float)) if args.na_probs else None
    result = evaluate(args.data, predictions, na_probs, args.na_prob_thresh, version=args.version)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        atomic_write(Path(args.output), text + "\n")
    return 0
