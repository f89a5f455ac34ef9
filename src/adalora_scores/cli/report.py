"""Write report.md and report.json into a sweep's folder: each score's mean ± std over the seeds in the paper's table
layout, paired tests against --reference with their power, score diagnostics and plots. Missing runs are listed,
never averaged over."""

from __future__ import annotations

import argparse

from adalora_scores.cli.common import add_plugin_option

HELP = "tables (paper layout), paired tests and plots from a sweep folder"
EXAMPLES = """  adalora-scores report results/paper
  adalora-scores report results/tuned --tuned learning_rate            # pick the LR per score and task
  adalora-scores report results/mine --reference random --no-plots"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="the --output folder of a sweep")
    no_plots_help = "write the tables, tests and diagnostics without the figures (plots/*.png)"
    parser.add_argument("--no-plots", action="store_true", help=no_plots_help)
    parser.add_argument(
        "--tuned",
        metavar="KEY[,KEY...]",
        help="tuned mode: per score and task pick the grid value of KEY (e.g. learning_rate), or the best combination "
        "of several keys (e.g. learning_rate,orth_reg_weight,lora_alpha)",
    )
    select_help = "pick on the held-out selection split (default) or on dev (labelled as such)"
    parser.add_argument("--select-on", choices=("selection", "dev"), default="selection", help=select_help)
    reference_help = "the score (or baseline) the paired tests compare with (sensitivity)"
    parser.add_argument("--reference", default="sensitivity", help=reference_help)
    add_plugin_option(parser)


def run(args: argparse.Namespace) -> int:
    from adalora_scores.study.report import build_report

    tuned, select_on, reference = args.tuned, args.select_on, args.reference
    path = build_report(args.folder, plot=not args.no_plots, tune_key=tuned, select_on=select_on, reference=reference)
    print(f"report: {path}")
    return 0
