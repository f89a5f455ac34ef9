"""The ``adalora-scores`` command line: one module per command, named as the command (``_`` for ``-``), whose
docstring is the command's description, ``HELP`` its line in the command list, ``EXAMPLES`` its epilog, with
``add_arguments(parser)`` beside ``run(args)``, the handler, which imports what it needs (this package imports no
torch). docs/architecture.md says where a new command goes."""

from __future__ import annotations

import argparse
import importlib
import sys

import adalora_scores
from adalora_scores.cli import demo, evaluate, evaluate_squad, export, predict, report, scores, sweep, train
from adalora_scores.cli.common import HelpFormatter
from adalora_scores.engine.console import hold_import_messages, quiet_console, show_held_messages

__all__ = ["COMMANDS", "build_parser", "main"]

COMMANDS = (scores, train, evaluate, export, predict, evaluate_squad, sweep, report, demo)
"""The command modules, in the order ``--help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adalora-scores",
        description="AdaLoRA with pluggable importance scores, on Hugging Face PEFT: fine-tune with a chosen score, "
        "compare scores over seeds, and use what you trained (evaluate, predict, export). `adalora-scores COMMAND "
        "--help` explains a command; docs/config.md lists every key=value setting.",
        epilog="""examples:
  adalora-scores demo                  # the whole study workflow offline, on a bundled task
  adalora-scores scores                # the registered importance scores
  adalora-scores train --task mrpc --score fisher --output runs/mrpc-fisher
  adalora-scores train --help""",
        formatter_class=HelpFormatter,
    )
    version_help = "print the version of adalora-scores and exit"
    parser.add_argument("--version", action="version", version=adalora_scores.__version__, help=version_help)
    commands_help = "what to do; `adalora-scores COMMAND --help` explains one"
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help=commands_help)
    for module in COMMANDS:
        name = module.__name__.rpartition(".")[2].replace("_", "-")
        epilog = f"examples:\n{module.EXAMPLES}"
        command = commands.add_parser(
            name, help=module.HELP, description=module.__doc__, epilog=epilog, formatter_class=HelpFormatter
        )
        module.add_arguments(command)
        command.set_defaults(run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)  # --help and --version exit here, before any heavy import
    stray = [item for item in extra if item.startswith("-") or "=" not in item]
    takes_overrides = "overrides" in vars(args)
    if stray or (extra and not takes_overrides):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)} (config values are given as key=value)")
    if takes_overrides:
        args.overrides = [*args.overrides, *extra]
    with hold_import_messages():  # PEFT imports bitsandbytes, whose offline kernel look-up logs (console.IMPORT_NOISE)
        importlib.import_module("adalora_scores.adapter")
    if getattr(args, "verbose", False):
        show_held_messages()  # what the package's imports logged (console.IMPORT_NOISE)
    try:
        with quiet_console(verbose=getattr(args, "verbose", True)):  # the commands with --verbose are quiet
            from adalora_scores.plugins.loading import load_entry_points, load_plugins

            load_entry_points()  # group adalora_scores.plugins, once per process
            load_plugins(getattr(args, "plugin", []), where="--plugin")
            return args.run(args)
    except (ValueError, KeyError, OSError, TypeError, RuntimeError, ImportError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"adalora-scores {args.command}: error: {message}", file=sys.stderr)
        return 2
