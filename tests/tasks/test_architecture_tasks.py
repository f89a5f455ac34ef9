"""One task contract and one registry: no module outside ``tasks/`` branches on a task's name, each built-in task is
``tasks/<name>/task.py``, scores and tasks live in a :class:`Registry` that plugin loading reads through its public
methods, and the example task and score of ``docs/architecture.md`` register and work.

The name check flags code that *compares* with a task name: ``==``, ``!=``, ``in``, ``not in``, ``match``/``case``
and ``.startswith``/``.endswith`` against a string literal that is, or starts with, a built-in task's name (``-``
and ``_`` aside; task names are lower case, so PEFT's ``TaskType`` values such as ``"CAUSAL_LM"`` are not among
them). Data tables keyed by task name are allowed, e.g. the published values of ``study/paper.py`` or the YAML
presets: a table holds facts about a task, a branch holds knowledge that belongs in the task's own class (a property
such as ``TaskBase.default_max_seq_length``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch

import adalora_scores
import adalora_scores.tasks
from adalora_scores.cli import main
from adalora_scores.config import TrainConfig
from adalora_scores.plugins.loading import PluginError, load_plugins
from adalora_scores.plugins.registry import Registry
from adalora_scores.scores.base import SCORES, create_score, get_score_class, list_scores
from adalora_scores.tasks import TASKS, TaskBase, configure_task, get_task, list_tasks, register_task

PACKAGE = Path(adalora_scores.__file__).parent
TASKS_FOLDER = PACKAGE / "tasks"
DOC = Path(__file__).parents[2] / "docs" / "architecture.md"


def _key(name: str) -> str:
    return name.replace("-", "").replace("_", "")


BUILT_INS = [name for name in list_tasks() if type(get_task(name)).__module__.startswith("adalora_scores.tasks.")]


def _strings(node: ast.AST) -> list[str]:
    """The string literals ``node`` is, or holds as a tuple, list or set."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [text for element in node.elts for text in _strings(element)]
    return []


def task_name_branches(path: Path, names: list[str]) -> list[str]:
    """``line: code`` of every comparison in ``path`` against a literal that is, or starts with, one of ``names``."""
    keys = [_key(name) for name in names]

    def names_a_task(texts: list[str]) -> bool:
        return any(_key(text).startswith(key) for text in texts for key in keys)

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Compare):
            compared = [node.left, *node.comparators]
            hit = any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn)) for op in node.ops) and any(
                names_a_task(_strings(side)) for side in compared
            )
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            hit = node.func.attr in ("startswith", "endswith") and any(names_a_task(_strings(a)) for a in node.args)
        elif isinstance(node, ast.MatchValue):
            hit = names_a_task(_strings(node.value))
        else:
            continue
        if hit:
            found.append(f"{node.lineno}: {ast.unparse(node)[:80]}")
    return found


def test_no_module_outside_tasks_branches_on_a_task_name():
    assert {"squad", "squad_v2", "rte", "sst2", "classification", "causal_lm"} <= set(BUILT_INS)
    outside = [path for path in PACKAGE.rglob("*.py") if TASKS_FOLDER not in path.parents]
    found = [f"{path.relative_to(PACKAGE)}:{hit}" for path in outside for hit in task_name_branches(path, BUILT_INS)]
    assert not found, "give the task a property and ask the task instead:\n" + "\n".join(found)


def test_the_name_check_catches_what_it_should(tmp_path):
    leak = tmp_path / "leak.py"
    leak.write_text(
        '"""Docstrings may name squad."""\n'
        "if task == 'rte': pass\n"
        "length = 384 if str(task).lower().startswith('squad') else 128\n"
        "regression = name in ('stsb', 'other')\n"
        "match task:\n    case 'sst-2': pass\n"
        "PUBLISHED = {'mrpc': 90.2, 'cola': 63.4}\n"  # a data table: allowed
        "same = metric == 'accuracy' or config.task_type == 'CAUSAL_LM'\n"
    )
    hits = task_name_branches(leak, BUILT_INS)
    assert sorted(int(hit.split(":")[0]) for hit in hits) == [2, 3, 4, 6], hits


@pytest.mark.parametrize("name", BUILT_INS)
def test_each_built_in_task_lives_in_its_own_task_module(name):
    module = type(get_task(name)).__module__
    assert re.fullmatch(r"adalora_scores\.tasks\.\w+\.task", module), module
    assert isinstance(get_task(name), TaskBase)


def test_one_task_contract():
    assert not hasattr(adalora_scores.tasks, "ProtocolTask") and not hasattr(adalora_scores.tasks, "Task")
    registering = sorted(
        str(path.relative_to(TASKS_FOLDER))
        for path in TASKS_FOLDER.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and ast.unparse(node.func) == "register_task"
    )
    assert len(registering) == 6 and all(name.endswith("/task.py") for name in registering), registering


def test_scores_and_tasks_are_registries_that_plugins_read_publicly():
    assert Registry.of("score") is SCORES and Registry.of("task") is TASKS
    assert {"score", "task"} <= set(Registry.all())
    assert list_scores() == SCORES.names() and list_tasks() == TASKS.names()
    with pytest.raises(KeyError, match=r"unknown task 'SQUAD_V3'. Did you mean 'squad_v2'\? Known tasks: "):
        get_task("SQUAD_V3")
    with pytest.raises(KeyError, match=r"unknown score 'fishr'. Did you mean 'fisher'\? Registered scores: "):
        get_score_class("fishr")
    loading = PACKAGE / "plugins" / "loading.py"
    assert "_REGISTRY" not in loading.read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(loading.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            assert not re.match(r"adalora_scores\.(scores|tasks)\b", node.module or ""), node.module


def test_a_failing_plugin_leaves_no_task_registered(tmp_path):
    plugin = tmp_path / "half_task.py"
    plugin.write_text(
        "from adalora_scores.tasks import get_task, register_task\n"
        "from adalora_scores.tasks.glue import GlueTask\n"
        "import dataclasses\n"
        "register_task(dataclasses.replace(get_task('rte'), name='test_half_task'))\n"
        "raise RuntimeError('broken after registering')\n"
    )
    with pytest.raises(PluginError, match="broken after registering"):
        load_plugins([plugin])
    assert "test_half_task" not in TASKS


def test_the_scores_command_lists_the_registry_descriptions(capsys):
    assert main(["scores"]) == 0
    listing = " ".join(capsys.readouterr().out.split())
    for name in list_scores():
        assert " ".join(f"{name} {SCORES.describe(name)}".split()) in listing, name
    assert SCORES.describe("sensitivity").endswith(".") and "\n" not in SCORES.describe("sensitivity")


def test_the_max_seq_length_default_is_the_tasks():
    assert [TrainConfig(task=name).max_seq_length for name in ("squad", "SQuAD-v2", "rte", "causal_lm")] == [
        384,
        384,
        128,
        128,
    ]
    assert TrainConfig(task="a_task_no_plugin_registered_yet").max_seq_length == 128
    assert TrainConfig(task="squad", max_seq_length=256).max_seq_length == 256


# -- the example of docs/architecture.md -----------------------------------------------------------------------------
def _documented_examples() -> list[str]:
    section = DOC.read_text(encoding="utf-8").split("## Adding a task or a score", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


def test_the_documented_task_and_score_register_and_work():
    task_code, score_code = _documented_examples()
    try:
        exec(compile(task_code, "architecture.md: the task", "exec"), {"__name__": "example_task"})  # noqa: S102
        exec(compile(score_code, "architecture.md: the score", "exec"), {"__name__": "example_score"})  # noqa: S102
        task = configure_task("Parity")
        assert task is get_task("parity") and isinstance(task, TaskBase)
        data = task.load(None)
        assert (len(data.train), len(data.evals["dev"])) == (16, 8)
        assert sum(example.label for example in data.evals["dev"]) == 4

        class Dev:
            labels = [example.label for example in data.evals["dev"]]

        logits = torch.tensor([[0.0, 1.0] if label else [1.0, 0.0] for label in Dev.labels])
        logits[0] = logits[0].flip(0)  # one wrong
        assert task.evaluate({"logits": logits}, Dev, None) == ({"accuracy": 7 / 8}, {})
        assert TrainConfig(task="parity").max_seq_length == 128
        with pytest.raises(ValueError, match="takes no task_options"):
            configure_task("parity", {"colour": "red"})
        with pytest.raises(ValueError, match="a task named 'parity' is already registered"):
            register_task(type(task)())
        assert TASKS.describe("parity") == "A toy task with its data built in: is the number of words even?"

        score = create_score("abs_grad", beta=0.5)
        score.mean_abs_grad = torch.full((2,), 2.0)  # what bind() allocates, given a value
        score.observe(torch.zeros(2), torch.tensor([-4.0, 1.0]))
        torch.testing.assert_close(score.element_scores(torch.zeros(2)), torch.tensor([3.0, 1.5]))  # 0.5·2 + 0.5·|g|
        assert (score.name, score.num_updates, SCORES.describe("abs_grad")) == ("abs_grad", 1, "s(w) = EMA of |g|.")
    finally:
        for registry, name in ((TASKS, "parity"), (SCORES, "abs_grad")):
            if name in registry:
                registry.unregister(name)
    assert "parity" not in list_tasks() and "abs_grad" not in list_scores()
