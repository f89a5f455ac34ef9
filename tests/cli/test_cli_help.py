"""``--help`` that teaches: every command has a description and examples that parse, every argument a help text;
``adalora-scores scores`` aligns its names and prints whole first sentences."""

from __future__ import annotations

import argparse
import inspect
import re
import shlex

import pytest

import adalora_scores
from adalora_scores.cli import build_parser, main


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


PARSER = build_parser()
COMMANDS = _subcommands(PARSER)


def _examples(parser: argparse.ArgumentParser) -> list[str]:
    """The example commands of a parser's epilog, without their comments."""
    lines = (parser.epilog or "").splitlines()
    assert lines and lines[0] == "examples:", f"{parser.prog}: the epilog starts with 'examples:'"
    return [line.split("  #")[0].strip() for line in lines[1:] if line.strip()]


def test_the_commands_are_the_known_ones():
    assert set(COMMANDS) == {
        "scores",
        "train",
        "evaluate",
        "export",
        "predict",
        "evaluate-squad",
        "sweep",
        "report",
        "demo",
    }


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_a_description_examples_and_help_on_every_argument(name):
    parser = COMMANDS[name]
    assert parser.description and len(parser.description) > 60, name
    examples = _examples(parser)
    assert examples and all(example.startswith(f"adalora-scores {name}") for example in examples), examples
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS, f"{name} {action.option_strings or action.dest}"
    help_text = parser.format_help()
    for example in examples:
        assert example in help_text  # the examples keep their lines


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_example_parses(name):
    """Each example is a valid command line: the parser accepts it, and stray words are key=value settings of a
    command that takes them."""
    for example in _examples(COMMANDS[name]):
        argv = shlex.split(example)[1:]
        args, extra = build_parser().parse_known_args(argv)
        assert args.command == name
        assert all("=" in item and not item.startswith("-") for item in extra), (example, extra)
        if extra:
            assert any(action.dest == "overrides" for action in COMMANDS[name]._actions), example


def test_the_program_has_a_description_examples_and_help_everywhere():
    assert PARSER.description and _examples(PARSER)
    for example in _examples(PARSER):
        argv = shlex.split(example)[1:]
        if "--help" not in argv:
            assert build_parser().parse_known_args(argv)[0].command == argv[0]
    for action in PARSER._actions:
        assert action.help, action.option_strings
    assert "adalora-scores train --task mrpc" in PARSER.format_help()


@pytest.mark.parametrize(
    "name,module,fields",
    [
        ("evaluate", "adalora_scores.engine.finished_run", "EVALUATION_FIELDS"),
        ("predict", "adalora_scores.engine.prediction", "PREDICTION_FIELDS"),
        ("export", "adalora_scores.engine.export", "EXPORT_FIELDS"),
    ],
)
def test_the_keys_a_command_may_change_are_named_in_its_description(name, module, fields):
    """The description names exactly the keys the command accepts (the engine's list)."""
    import importlib

    allowed = set(getattr(importlib.import_module(module), fields))
    from adalora_scores.config import TrainConfig

    keys = {field for field in TrainConfig.__dataclass_fields__}
    named = {word for word in re.findall(r"[a-z_0-9]+", COMMANDS[name].description) if word in keys}
    assert named == allowed


def test_scores_aligns_names_and_prints_whole_first_sentences(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert main(["scores"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = adalora_scores.list_scores()
    width = max(map(len, names)) + 2
    entries: dict[str, str] = {}
    for line in lines:
        assert len(line) <= 100, line
        if line[:width].strip():
            name = line[:width].strip()
            entries[name] = line[width:]
        else:
            entries[name] += " " + line[width:]
        assert line[width - 1] == " " and line[width] != " "  # every description starts in the same column
    assert list(entries) == names
    for name, text in entries.items():
        doc = " ".join(inspect.getdoc(adalora_scores.get_score_class(name)).split("\n\n")[0].split())
        assert doc.replace("``", "").startswith(text) and text.endswith("."), (name, text)
    # hand-read: the first sentence ends after "eq. 3)" and after "(... engine)", never inside brackets
    assert entries["movement"] == 'Signed movement score (Sanh, Wolf & Rush, "Movement Pruning", NeurIPS 2020, eq. 3).'
    assert entries["random"] == (
        "Control: a fixed uniform random priority per triplet, drawn once per run from seed "
        "(the run's seed when None is given to the engine)."
    )
