"""``docs/config.md``, the reference of every setting, generated from :class:`~adalora_scores.config.TrainConfig`.

Each key's type is its annotation and its meaning the attribute docstring below the field, both read from the
source with :mod:`ast`; its default is the dataclass default; its valid values are the words of the check that
refuses a bad value, found by building a ``TrainConfig`` with probe values (:func:`valid_values`), so the reference
says what ``__post_init__`` enforces and nothing is written twice. ``task`` and ``score`` list the registered names.
Which keys ``evaluate``, ``export`` and ``predict`` may change comes from the engine's lists of them.

Regenerate after changing a field::

    python -m adalora_scores.cli.config_reference docs/config.md

Without a path it prints the text. ``tests/cli/test_config_reference.py`` fails when ``docs/config.md`` differs.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

from adalora_scores.config import ALIASES, TASK_OPTION_ALIASES, TrainConfig
from adalora_scores.engine.console import hold_import_messages

__all__ = ["REGENERATE", "field_sources", "reference_text", "valid_values"]

REGENERATE = "python -m adalora_scores.cli.config_reference docs/config.md"
"""The command that writes ``docs/config.md`` (run in the checkout)."""

PROBES: tuple[Any, ...] = (-1, 0, 1.5, "?")
"""Values tried for each field: one of them breaks every range or choice ``TrainConfig`` checks."""


@dataclasses.dataclass(frozen=True)
class FieldSource:
    """A field of ``TrainConfig`` as its source writes it."""

    annotation: str
    docstring: str


def field_sources(config_class: type = TrainConfig) -> dict[str, FieldSource]:
    """Every field's annotation and attribute docstring, in order; a field without a docstring is an error that
    names it."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(config_class)))
    body = tree.body[0].body
    sources: dict[str, FieldSource] = {}
    for statement, following in zip(body, [*body[1:], None], strict=True):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        name = statement.target.id
        documented = isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
        if not documented or not isinstance(following.value.value, str):
            raise ValueError(
                f"{config_class.__name__}.{name} has no docstring: write one below the field (what "
                f"it means, its unit, what None means), then run `{REGENERATE}`."
            )
        sources[name] = FieldSource(ast.unparse(statement.annotation), inspect.cleandoc(following.value.value))
    return sources


def valid_values(name: str) -> str | None:
    """The rule ``TrainConfig`` enforces on ``name``, in the words of its error message (``"must be > 0, got -1"``
    gives ``"> 0"``; run-time numbers in brackets are dropped), or None where no probe (:data:`PROBES`) is
    refused."""
    pattern = re.compile(rf"{re.escape(name)}(?: \([^)]*\))? must be (?P<rule>.+?)(?:, got .*)?\.?", re.S)
    for probe in PROBES:
        try:
            TrainConfig(**{"task": "mrpc", name: probe})
        except ValueError as error:
            match = pattern.fullmatch(str(error))
            if match:
                return re.sub(r" \(-?[\d.]+\)", "", match["rule"])
        except TypeError:  # a comparison of the probe's type: not this field's kind of value
            continue
    return None


def _registered(name: str) -> str | None:
    """The registered names of the fields that name a registry entry."""
    if name == "task":
        from adalora_scores.tasks import list_tasks

        return "a registered task: " + ", ".join(list_tasks())
    if name == "score":
        from adalora_scores.scores import list_scores

        return "a registered score: " + ", ".join(list_scores())
    return None


def _yaml(value: Any) -> str:
    """``value`` as one would write it in YAML or ``key=value``."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text.removesuffix("...").strip()


def _default(item: dataclasses.Field) -> Any:
    return item.default_factory() if item.default is dataclasses.MISSING else item.default  # type: ignore[misc]


def _markdown(docstring: str) -> str:
    """reST of a docstring as Markdown: ``code`` and :role:`target` as `code`, each paragraph on one line (a
    wrapped line could start with a Markdown list or quote mark)."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", docstring).replace("``", "`")
    return "\n\n".join(" ".join(part.split()) for part in text.split("\n\n"))


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


INTRODUCTION = """\
# Settings reference

Every setting of a run is a key of `TrainConfig` (`src/adalora_scores/config.py`). This page is generated from it,
and `tests/cli/test_config_reference.py` fails when the two differ: to change what it says, change the field's
docstring or check there, then run `{regenerate}` in the checkout.

## Where a value comes from

A run's values, each level over the ones before it:

1. the defaults below;
2. the `defaults:` of a train YAML (`--config FILE`, or a bundled preset by name such as `paper-glue`);
3. that file's `tasks:` entry for the run's task;
4. the flags of `adalora-scores train`: `--task`, `--score`, `--model`, `--data`, `--seed`;
5. `key=value` after the flags, e.g. `learning_rate=2e-3`. `score_options.NAME=VALUE` and `task_options.NAME=VALUE`
   set one option and keep the file's others.

`adalora-scores train --print-config` prints the resolved values as a train YAML and exits without training;
`--config` reads that file back.

## A train YAML

A train YAML has these sections, all optional:

```yaml
kind: train                  # a sweep file's kind is sweep
description: my MRPC run     # free text
plugins: [./my_score.py]     # .py files (relative to this file) or modules that register scores or tasks
output: runs/mrpc-fisher     # the run folder, as --output (relative to the current folder); sweeps ignore it
defaults:                    # values of any key below, for every task
  task: mrpc
  score: fisher
  learning_rate: 1.0e-3
tasks:                       # values for one task, over defaults: (paper-glue sets each GLUE task's)
  rte: {{learning_rate: 1.2e-3}}
```

A file that names its `output` and whose `defaults:` set `task` (and `model`, `data` and `score` where their
defaults do not suit) is a whole run; flags and `key=value` still override it:

```bash
cat > run.yaml <<'EOF'
kind: train
output: runs/sst2-fisher
defaults:
  task: sst2
  model: microsoft/deberta-v3-base
  data: glue_data/SST-2
  score: fisher
  num_epochs: 1
EOF
adalora-scores train --config run.yaml --print-config
adalora-scores train --config run.yaml
```

Write numbers in YAML with a decimal point or as plain decimals (`1.0e-3` or `0.001`): YAML 1.1 reads `1e-3` as
text, which the float keys also accept.
"""


def _commands_section() -> str:
    from adalora_scores.engine.export import EXPORT_FIELDS
    from adalora_scores.engine.finished_run import EVALUATION_FIELDS
    from adalora_scores.engine.prediction import PREDICTION_FIELDS

    def keys(fields: tuple[str, ...]) -> str:
        return ", ".join(f"[`{name}`](#{name})" for name in fields)

    rows = [
        ("`train`", "every key"),
        ("`sweep`", "every key, for every run (over the sweep file's `set:`)"),
        ("`demo`", "every key, for every run of the demo"),
        ("`evaluate`", keys(EVALUATION_FIELDS)),
        ("`predict`", keys(PREDICTION_FIELDS)),
        ("`export`", keys(EXPORT_FIELDS)),
    ]
    table = "\n".join(f"| {command} | {what} |" for command, what in rows)
    return (
        "## Keys each command takes\n\nEach command takes `key=value` after its flags; `evaluate`, `predict` and "
        "`export` change only these keys of the run's saved config:\n\n| command | `key=value` |\n| --- | --- |\n"
        f"{table}\n"
    )


def _keys_section() -> str:
    sources = field_sources()
    rows, sections = [], []
    for item in dataclasses.fields(TrainConfig):
        source = sources[item.name]
        rule = _registered(item.name) or valid_values(item.name)
        default = _default(item)
        default = "none: required" if default == "" else f"`{_cell(_yaml(default))}`"
        rows.append(
            f"| [`{item.name}`](#{item.name}) | `{_cell(source.annotation)}` | {default} | {_cell(rule or 'any')} |"
        )
        names = [alias for alias, target in ALIASES.items() if target == item.name]
        also = f" Also accepted as {', '.join(f'`{alias}`' for alias in names)}." if names else ""
        sections.append(f"### `{item.name}`\n\n{_markdown(source.docstring)}{also}\n")
    table = "\n".join(rows)
    return (
        '## Keys\n\n"valid values" are what a run checks before any work; "any" means no check beyond the '
        "type.\n\n| key | type | default | valid values |\n| --- | --- | --- | --- |\n"
        f"{table}\n\n" + "\n".join(sections)
    )


def _old_names_section() -> str:
    rows = [f"| `{alias}` | [`{target}`](#{target}) |" for alias, target in ALIASES.items()]
    rows += [
        f"| `{name}` | `task_options.{name}` (SQuAD's option; `{_yaml(default)}` leaves it out) |"
        for name, default in TASK_OPTION_ALIASES.items()
    ]
    return (
        "## Other names\n\nAccepted wherever a value is given (a train YAML, a sweep file, a flag, `key=value`), "
        "for PEFT's and the AdaLoRA code's names and for older run folders:\n\n| name | is |\n| --- | --- |\n"
        + "\n".join(rows)
        + "\n"
    )


def reference_text() -> str:
    """The whole of ``docs/config.md``."""
    parts = [INTRODUCTION.format(regenerate=REGENERATE), _commands_section(), _keys_section(), _old_names_section()]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    with hold_import_messages():  # PEFT imports bitsandbytes, whose offline kernel look-up logs (console.IMPORT_NOISE)
        text = reference_text()
    if not arguments:
        sys.stdout.write(text)
        return 0
    from adalora_scores.runs.atomic import atomic_write

    atomic_write(Path(arguments[0]), text)
    print(f"wrote {arguments[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
