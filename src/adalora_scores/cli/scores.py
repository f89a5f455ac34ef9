"""List the registered importance scores by name, each with the first sentence of its description; a name goes into
train --score or a sweep's grid. docs/scores.md has their formulas."""

from __future__ import annotations

import argparse
import re
import shutil
import textwrap

from adalora_scores.cli.common import add_plugin_option

HELP = "list the registered importance scores"
EXAMPLES = """  adalora-scores scores
  adalora-scores scores --plugin ./my_score.py   # with the scores a file of your own registers"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_plugin_option(parser)


def run(args: argparse.Namespace) -> int:
    import adalora_scores

    names = adalora_scores.list_scores()
    width = max(len(name) for name in names) + 2
    columns = max(shutil.get_terminal_size((100, 24)).columns, width + 40)
    for name in names:
        sentence = first_sentence(adalora_scores.get_score_class(name).__doc__ or "")
        print(textwrap.fill(sentence, columns, initial_indent=name.ljust(width), subsequent_indent=" " * width))
    return 0


def first_sentence(text: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line, without reST's ``double backquotes``: up
    to the first full stop that ends the paragraph or is followed by a space and a capital letter outside
    parentheses (so "eq. 3" and "(... et al. 2018)" stay inside)."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split()).replace("``", "")
    depth = 0
    for index, character in enumerate(paragraph):
        depth += {"(": 1, ")": -1}.get(character, 0)
        rest = paragraph[index + 1 :]
        if character == "." and depth <= 0 and (not rest or re.match(r" [A-Z]", rest)):
            return paragraph[: index + 1]
    return paragraph
