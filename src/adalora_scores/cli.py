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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adalora-scores", description="AdaLoRA with pluggable importance scores.")
    parser.add_argument("--version", action="version", version=adalora_scores.__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("scores", help="list the registered importance scores").set_defaults(run=_scores)
    quick = commands.add_parser("quickstart", help="every score on a tiny offline model (a workflow demo)")
    quick.add_argument("--steps", type=int, default=150)
    quick.add_argument("--seed", type=int, default=0)
    quick.set_defaults(run=_quickstart)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
