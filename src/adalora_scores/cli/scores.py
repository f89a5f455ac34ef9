"""List the registered importance scores by name, each with the first sentence of its description; a name goes into
train --score or a sweep's grid. docs/scores.md has their formulas."""

from __future__ import annotations

import argparse
import shutil
import textwrap

from adalora_scores.cli.common import add_plugin_option

HELP = "list the registered importance scores"
EXAMPLES = """  adalora-scores scores
  adalora-scores scores --plugin ./my_score.py   # with the scores a file of your own registers"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plugin_option(parser)


def run(args: argparse.Namespace) -> int:
    from adalora_scores.scores.base import SCORES

    names = SCORES.names()
    width = max(len(name) for name in names) + 2
    columns = max(shutil.get_terminal_size((100, 24)).columns, width + 40)
    for name in names:
        sentence = SCORES.describe(name)
        print(textwrap.fill(sentence, columns, initial_indent=name.ljust(width), subsequent_indent=" " * width))
    return 0
