"""The whole study workflow offline: sweep every registered score and the random controls over --seeds on the bundled
synthetic task (with all-MiniLM-L6-v2 weights where installed, else a tiny random model), then write the report. It
demonstrates the workflow; its numbers are not a result. Finished runs in --output are reused, so an interrupted
demo resumes."""

from __future__ import annotations

import argparse

from adalora_scores.cli.common import add_run_options, integers

HELP = "the whole flow offline: sweep every score, then report"
EXAMPLES = """  adalora-scores demo
  adalora-scores demo --output demo-results --seeds 1,2,3
  adalora-scores demo --tiny num_epochs=1   # a tiny random model, one epoch"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="demo-results", help="folder for runs and report (default demo-results)")
    parser.add_argument("--seeds", default="1,2", help="comma-separated seeds (default 1,2)")
    parser.add_argument("--tiny", action="store_true", help="use a tiny random model even if MiniLM is installed")
    add_run_options(parser, "any TrainConfig key, set for every run of the demo, e.g. num_epochs=1")


def run(args: argparse.Namespace) -> int:
    from adalora_scores.demo import run_demo
    from adalora_scores.presets.overrides import parse_overrides

    seeds = tuple(integers(args.seeds, "--seeds", "integers, e.g. 1,2,3"))
    run_demo(args.output, seeds=seeds, tiny=args.tiny, **parse_overrides(args.overrides))
    return 0
