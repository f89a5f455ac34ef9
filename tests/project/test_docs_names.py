"""Every command, flag and preset the README and the guides name exists: the commands and flags in
``adalora_scores.cli.build_parser()``, the preset files on disk. The examples that run
(``tests/project/test_docs.py``) catch a stale name in a code block; these tests also read what is not run: inline
code in the prose (`` `train --config NAME` ``, `` `--uniform-rank R` ``), output transcripts and the commands of
``benchmarks/README.md``."""

from __future__ import annotations

import argparse
import re
import shlex
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from _docs_examples import DOC_FILES, ROOT, split_commands

from adalora_scores.cli import build_parser
from adalora_scores.presets.files import SWEEP_PRESET_DIR, TRAIN_PRESET_DIR

NAMED_IN = (*DOC_FILES, ROOT / "benchmarks" / "README.md")
"""The files whose names are checked: the README, the guides in ``docs/`` and the benchmarks' results page."""
SHELL_FENCES = ("bash", "sh", "shell")
SHELL_OPERATORS = {"|", "||", "&&", ";", ">", ">>", "<", "2>", "&"}
_INLINE = re.compile(r"(?<!`)`((?:[^`\n]|\n(?!\n))+)`(?!`)")
"""Inline code, which may wrap onto the next line of its paragraph."""
_FENCE = re.compile(r"^(?P<indent> *)```(?P<language>[\w+-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
_PRESET_PATH = re.compile(r"presets/(?:train|sweep)/[\w.-]+\.yaml")


@dataclass(frozen=True)
class Named:
    """One command line a doc names: in a shell block, an output transcript (``$ ...``) or inline code."""

    where: str
    """``file:line``."""
    words: tuple[str, ...]
    inline: bool


def _words(command: str) -> list[str]:
    """The words of a command line as a reader types it (quotes removed; unbalanced quoting split at spaces)."""
    command = command.replace("\\\n", " ")
    try:
        return shlex.split(command, comments=True)
    except ValueError:
        return command.split("#")[0].split()


def named_commands(text: str, file: str) -> list[Named]:
    """The command lines of the doc ``file`` whose text is ``text``: every command of its shell blocks, the ``$ ``
    lines of its ``console`` blocks, and its inline code outside blocks."""
    found = []
    for match in _FENCE.finditer(text):
        body, line = textwrap.dedent(match["body"]), text.count("\n", 0, match.start()) + 1
        if match["language"] in SHELL_FENCES:
            commands = [command.split("<<")[0] for command in split_commands(body)]  # a heredoc's body is a file
        elif match["language"] == "console":
            commands = [command[2:] for command in body.splitlines() if command.startswith("$ ")]
        else:
            continue
        found += [Named(f"{file}:{line}", tuple(_words(command)), inline=False) for command in commands]
    prose = _FENCE.sub(lambda match: "\n" * match.group().count("\n"), text)
    for match in _INLINE.finditer(prose):
        line = prose.count("\n", 0, match.start()) + 1
        found.append(Named(f"{file}:{line}", tuple(_words(match[1].replace("\n", " "))), inline=True))
    return found


def named_in(path: Path) -> list[Named]:
    return named_commands(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(actions[0].choices)


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _invocations(words: tuple[str, ...]) -> list[list[str]]:
    """The argument lists given to ``adalora-scores`` (or ``python -m adalora_scores.cli``, as launchers run it) in
    one command line, each up to the next shell operator."""
    found = []
    for i, word in enumerate(words):
        if word == "adalora-scores" or word.endswith("/adalora-scores"):
            start = i + 1
        elif word == "adalora_scores.cli" and i > 0 and words[i - 1] == "-m":
            start = i + 1
        else:
            continue
        rest = list(words[start:])
        cut = next((j for j, item in enumerate(rest) if item in SHELL_OPERATORS), len(rest))
        found.append(rest[:cut])
    return found


def _flags(argv: list[str]) -> list[str]:
    return [word.split("=")[0] for word in argv if word.startswith("-") and word != "-" and not word[1:2].isdigit()]


def _placeholder(word: str) -> bool:
    """``NAME``, ``FILE``, ``RUN``, ``i/n``: a value the reader fills in."""
    return word.isupper() or word in ("...", "…")


def _preset_problems(kind: str, name: str, text: str) -> list[str]:
    """A preset named after ``train --config`` (``kind`` train) or ``sweep`` (``kind`` sweep) that does not exist: a
    bundled name, a ``presets/`` path, or a file that the same doc writes first."""
    if _placeholder(name) or name.startswith("$"):
        return []
    if "/" in name or name.endswith((".yaml", ".yml")):
        if name.startswith("presets/"):
            return [] if (ROOT / name).is_file() else [f"{name}: no such preset file"]
        return [] if re.search(rf">\s*{re.escape(name)}\b", text) else [f"{name}: a file the doc never writes"]
    folder = TRAIN_PRESET_DIR if kind == "train" else SWEEP_PRESET_DIR
    bundled = sorted(path.stem for path in folder.glob("*.yaml"))
    return [] if (folder / f"{name}.yaml").is_file() else [f"{kind} preset {name!r}: not bundled (bundled: {bundled})"]


def _invocation_problems(argv: list[str], parser: argparse.ArgumentParser, text: str) -> list[str]:
    commands = _subparsers(parser)
    if not argv or argv[0].startswith("-"):
        return [f"adalora-scores {flag}: no such option" for flag in _flags(argv) if flag not in _options(parser)]
    command = argv[0]
    if _placeholder(command):
        return []  # `adalora-scores ...`: any command
    if command not in commands:
        return [f"adalora-scores {command}: no such command (commands: {', '.join(commands)})"]
    known = _options(commands[command])
    problems = [f"adalora-scores {command} {flag}: no such flag" for flag in _flags(argv[1:]) if flag not in known]
    if command == "train" and "--config" in argv[1:-1]:
        problems += _preset_problems("train", argv[argv.index("--config") + 1], text)
    if command == "sweep":
        spec = next((word for word in argv[1:] if not word.startswith("-")), None)
        problems += _preset_problems("sweep", spec, text) if spec else []
    return problems


def _script_problems(words: tuple[str, ...]) -> list[str]:
    """``bash scripts/NAME.sh --flag`` and ``python benchmarks/NAME.py --flag``: the file exists and reads the flag
    (itself or through the file it runs)."""
    if len(words) < 2 or words[0] not in ("bash", "python", "python3") or not words[1].endswith((".sh", ".py")):
        return []
    script = ROOT / words[1]
    if not script.is_file():
        return [f"{words[1]}: no such file"] if words[1].startswith(("scripts/", "benchmarks/")) else []
    text = script.read_text(encoding="utf-8")
    text += "".join((ROOT / ran).read_text(encoding="utf-8") for ran in re.findall(r"benchmarks/\w+\.py", text))
    return [
        f"{words[1]} {flag}: the script takes no such flag"
        for flag in _flags(list(words[2:]))
        if f'"{flag}"' not in text
    ]


OTHER_PROGRAMS = {
    "--num_machines": "accelerate launch (docs/scale.md names its multi-machine flags in prose)",
    "--lora-dtype": "vllm serve (docs/export.md names it in prose)",
}
"""Flags of other programs that the docs name only in prose, never in an example; the examples' own flags of other
programs (``vllm serve ... --max-lora-rank``, ``torchrun --nproc_per_node``) are found by themselves."""


def other_flags() -> set[str]:
    """Flags that are not adalora-scores': those the docs' shell examples give other programs (before any
    ``adalora-scores`` of the line), those the repository's scripts and benchmarks take, and :data:`OTHER_PROGRAMS`."""
    flags = set(OTHER_PROGRAMS)
    for item in named_everywhere():
        if not item.inline:
            words = list(item.words)
            starts = [i for i, word in enumerate(words) if word.endswith("adalora-scores") or word == "-m"]
            flags |= set(_flags(words[: starts[0]] if starts else words))
    for script in [*ROOT.glob("scripts/*.sh"), *ROOT.glob("benchmarks/*.py")]:
        flags |= set(re.findall(r"[\"'](--[a-z][\w-]*)[\"']", script.read_text(encoding="utf-8")))
    return flags


def problems_of(named: list[Named], text: str, parser: argparse.ArgumentParser) -> list[str]:
    """What ``named`` (the command lines of one doc whose whole text is ``text``) gets wrong: commands, flags and
    presets that do not exist. A bare inline flag (`` `--merge` ``) must be one of adalora-scores' flags, or another
    program's (:func:`other_flags`)."""
    ours = _options(parser) | {flag for sub in _subparsers(parser).values() for flag in _options(sub)}
    others = other_flags()
    commands = _subparsers(parser)
    problems = []
    for item in named:
        invocations = _invocations(item.words)
        if not invocations and item.inline and item.words and item.words[0] in commands and len(item.words) > 1:
            invocations = [list(item.words)]  # `train --config NAME`: a command named without the program
        for argv in invocations:
            problems += [f"{item.where}: {problem}" for problem in _invocation_problems(argv, parser, text)]
        problems += [f"{item.where}: {problem}" for problem in _script_problems(item.words)]
        if item.inline and item.words and item.words[0].startswith("--"):
            flag = item.words[0].split("=")[0]
            if flag not in ours | others:
                problems.append(
                    f"{item.where}: {flag}: no adalora-scores command takes it, and no example gives "
                    "it to another program"
                )
    for path in _PRESET_PATH.findall(text):
        if not (ROOT / path).is_file():
            problems.append(f"{path}: no such preset file")
    return problems


def named_everywhere() -> list[Named]:
    return [item for path in NAMED_IN for item in named_in(path)]


# ---------------------------------------------------------------- the docs
@pytest.mark.parametrize("path", NAMED_IN, ids=[str(path.relative_to(ROOT)) for path in NAMED_IN])
def test_every_named_command_flag_and_preset_exists(path: Path):
    problems = problems_of(named_in(path), path.read_text(encoding="utf-8"), build_parser())
    assert not problems, "\n".join(problems)


def test_the_docs_name_every_command():
    """Each command has a guide: the README's table names them all."""
    named = {argv[0] for item in named_in(ROOT / "README.md") for argv in _invocations(item.words) if argv}
    assert set(_subparsers(build_parser())) <= named


# ---------------------------------------------------------------- the check itself
def _check(markdown: str) -> list[str]:
    return problems_of(named_commands(markdown, "example.md"), markdown, build_parser())


def test_the_check_finds_what_does_not_exist():
    stale = (
        "Run `adalora-scores trian RUN`, then `train --no-such-flag`, or `--also-missing`, with "
        "`train --config paper-gleu` and presets/sweep/gone.yaml.\n\n"
        "```bash\nadalora-scores export RUN --output DIR --uniform-ranks 16\n"
        "adalora-scores sweep no-such-sweep --output results\nbash scripts/test.sh --newest\n```\n\n"
        "```console\n$ adalora-scores report results --tune learning_rate\nreport: results/report.md\n```\n"
    )
    problems = "\n".join(_check(stale))
    for expected in (
        "adalora-scores trian: no such command",
        "train --no-such-flag: no such flag",
        "--also-missing: no adalora-scores command",
        "train preset 'paper-gleu'",
        "gone.yaml",
        "export --uniform-ranks: no such flag",
        "sweep preset 'no-such-sweep'",
        "scripts/test.sh --newest",
        "report --tune: no such flag",
    ):
        assert expected in problems, expected
    assert len(problems.splitlines()) == 9, problems


def test_the_check_passes_what_exists():
    sound = (
        "`train --config paper-glue`, `--uniform-rank R`, `sweep paper` and presets/train/paper-squad.yaml.\n\n"
        "```bash\ncat > mine.yaml <<'EOF'\nkind: sweep\nEOF\nadalora-scores sweep mine.yaml --output out --dry-run\n"
        "torchrun --nproc_per_node 2 -m adalora_scores.cli train --task rte --output runs/x seed=1\n"
        "bash scripts/test.sh --latest\n```\n"
    )
    assert _check(sound) == []
