"""What the commands share: the help layout and the arguments several commands take
(``--verbose``, ``--plugin``, ``key=value``, and those of the commands that read a finished run folder)."""

from __future__ import annotations

import argparse
import textwrap

VERBOSE_HELP = (
    "also show library warnings, transformers' load reports, library progress bars and each run's first line"
)
PLUGIN_HELP = (
    "a .py file or an importable module that registers scores (@register_score) or tasks, imported before the "
    "command runs; repeat for several (installed entry points of group adalora_scores.plugins load by themselves)"
)


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description or epilog on its own; lines that start with spaces (the examples)
    stay as written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        def fill(block: str) -> str:
            lines = block.splitlines()
            if all(line.startswith(" ") or line.endswith(":") for line in lines):
                return "\n".join(indent + line for line in lines)
            return textwrap.fill(" ".join(block.split()), width, initial_indent=indent, subsequent_indent=indent)

        return "\n\n".join(fill(block) for block in textwrap.dedent(text).strip("\n").split("\n\n"))


def add_plugin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plugin", action="append", default=[], metavar="PATH_OR_MODULE", help=PLUGIN_HELP)


def add_run_options(parser: argparse.ArgumentParser, overrides: str) -> None:
    """``--verbose``, ``key=value`` settings (``overrides`` is their help) and ``--plugin``: the options of the
    commands that train or load a model."""
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help=overrides)
    add_plugin_option(parser)


def add_run_folder_arguments(parser: argparse.ArgumentParser, overwrite: str, example: str) -> None:
    """The arguments of ``evaluate``, ``export`` and ``predict``, added after the command's own: the finished run
    folder, ``--overwrite`` (``overwrite`` says what it replaces), ``--verbose``, ``key=value`` changes of the run's
    config (``example`` shows one) and ``--plugin``."""
    parser.add_argument("run_folder", metavar="RUN", help="a finished run folder")
    parser.add_argument("--overwrite", action="store_true", help=f"replace {overwrite}")
    add_run_options(parser, f"a change of the run's config, of the keys above, e.g. {example}")


def integers(text: str | None, option: str, example: str) -> list[int]:
    """A comma-separated list of integers (``8,16,32``), empty when not given; an error names ``option``."""
    try:
        return [int(part) for part in (text or "").split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"{option} {text!r}: expected comma-separated {example}.") from None
