"""The task contract: every optional hook is declared on ``TaskBase`` with its default, the engine calls hooks
directly (no look-up by name), a task that overrides one hook and no more trains, only a ``TaskBase`` registers,
and the task modules import each other only through the shared modules (``tasks/base.py``, ``tasks/data.py``,
``tasks/tables.py``)."""

from __future__ import annotations

import ast
import inspect
import json
import re
from pathlib import Path

import pytest
import torch

import adalora_scores
from adalora_scores.cli import main
from adalora_scores.config import TrainConfig
from adalora_scores.tasks import (
    TASKS,
    EncodedDataset,
    Example,
    TaskBase,
    TaskData,
    configure_task,
    get_task,
    list_tasks,
    register_task,
)
from adalora_scores.tasks import base as task_base

PACKAGE = Path(adalora_scores.__file__).parent
BUNDLED = ("contrast", "tweet_sentiment")
BUILT_INS = (
    "causal_lm",
    "classification",
    "contrast_sentiment",
    "squad",
    "squad_v2",
    "cola",
    "sst2",
    "mrpc",
    "qqp",
    "stsb",
    "mnli",
    "qnli",
    "rte",
    "wnli",
)


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _enclosing(tree: ast.Module) -> dict[ast.AST, list[str]]:
    """Every node → the names of the classes and functions around it, outermost first."""
    scopes: dict[ast.AST, list[str]] = {}

    def visit(node: ast.AST, names: list[str]) -> None:
        scopes[node] = names
        inner = [*names, node.name] if isinstance(node, (ast.ClassDef, ast.FunctionDef)) else names
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, [])
    return scopes


# -- no probing -----------------------------------------------------------------------------------------------------
def test_no_hook_is_looked_up_by_name():
    """``getattr``/``hasattr`` never name a hook, and no code looks up an attribute of a task by name."""
    names = {*task_base.HOOKS, "load", "load_model", "encode", "evaluate", "expected_data"}
    lookups = []
    for path in PACKAGE.rglob("*.py"):
        tree = _tree(path)
        scopes = _enclosing(tree)
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2
            ):
                continue
            target, name = ast.unparse(node.args[0]), node.args[1]
            assert not (isinstance(name, ast.Constant) and name.value in names), f"{path}: {ast.unparse(node)}"
            if re.fullmatch(r"(self\.)?task", target):
                lookups.append((str(path.relative_to(PACKAGE)), scopes[node][-1]))
    assert lookups == []
    for path in [
        *(PACKAGE / "engine").glob("*.py"),
        *(PACKAGE / "cli").glob("*.py"),
        *(PACKAGE / "study").glob("*.py"),
    ]:
        assert not re.search(r"(hasattr|getattr)\(\s*(self\.)?task\b", path.read_text()), path


def test_the_hooks_are_declared_and_documented_on_task_base():
    for hook in task_base.HOOKS:
        method = getattr(TaskBase, hook)
        assert "Called" in method.__doc__ and "Default" in method.__doc__, hook


@pytest.mark.parametrize("name", BUILT_INS)
def test_every_built_in_task_subclasses_task_base(name):
    task = get_task(name)
    assert isinstance(task, TaskBase)
    configured = task.with_options({"text_column": "text"} if name == "classification" else {})
    assert isinstance(configured, TaskBase)


# -- the defaults the engine relies on ------------------------------------------------------------------------------
class _Minimal(TaskBase):
    name, main_metric, eval_splits = "minimal", "accuracy", ("dev",)
    modules_to_save, output_names, group_key = (), ("logits",), None

    def load(self, data):
        return TaskData([], {"dev": []})

    def load_model(self, name, **model_options):
        return torch.nn.Identity()

    def encode(self, examples, tokenizer, config, *, train):
        return examples

    def evaluate(self, outputs, dataset, config):
        return {}, {}

    def expected_data(self):
        return "nothing"


def test_task_base_defaults():
    task = _Minimal()
    assert task.with_options({}) is task
    with pytest.raises(ValueError, match="task minimal takes no task_options .got colour.; remove them"):
        task.with_options({"colour": "red"})
    assert task.check_config(TrainConfig(task="minimal")) is None
    assert task.generation_request([1, 2]) is None
    assert task.run_files() == {}
    seen = {}

    def model(**inputs):
        seen.update(inputs)
        return {"logits": torch.zeros(1)}

    batch = {
        "input_ids": torch.ones(1, 3),
        "labels": torch.ones(1),
        "start_positions": torch.ones(1),
        "end_positions": torch.ones(1),
    }
    assert task.batch_outputs(model, batch) == {"logits": torch.zeros(1)}
    assert set(seen) == {"input_ids"}  # the labels stay out of the model's inputs, as predict() leaves them out


def test_a_task_base_subclass_must_define_the_protocol_methods():
    class Incomplete(TaskBase):
        name = "incomplete"

        def load(self, data):
            return None

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


# -- a task that overrides one hook ---------------------------------------------------------------------------------
class PlainParity(TaskBase):
    """A task with the members alone, no ``with_options`` and one hook (``run_files``); ``load_model(name)`` takes no
    model options."""

    name = "test_plain_parity"
    main_metric = "accuracy"
    eval_splits = ("dev",)
    modules_to_save = ("classifier", "pooler")
    output_names = ("logits",)
    group_key = None

    def load(self, data):
        words = ("cat", "dog", "mat", "red")
        examples = [Example(" ".join(words[: 1 + i % 4]), None, i % 2) for i in range(24)]
        return TaskData(examples[:16], {"dev": examples[16:]})

    def load_model(self, name):
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(name, num_labels=2, ignore_mismatched_sizes=True)

    def encode(self, examples, tokenizer, config, *, train):
        return EncodedDataset(examples, tokenizer, config.max_seq_length)

    def evaluate(self, outputs, dataset, config):
        predictions = outputs["logits"].argmax(-1).tolist()
        hits = sum(int(p == y) for p, y in zip(predictions, dataset.labels, strict=True))
        return {"accuracy": hits / len(predictions)}, {}

    def expected_data(self):
        return "nothing: the data is built in"

    def run_files(self):
        return {"plain.json": {"written_by": self.name}}


@pytest.fixture
def plain_task():
    task = register_task(PlainParity())
    yield task
    TASKS.unregister(task.name)


def test_only_a_task_base_registers():
    class ProtocolOnly:  # every member of the contract, without the base class
        name, main_metric, eval_splits = "test_protocol_only", "accuracy", ("dev",)
        modules_to_save, output_names, group_key = (), ("logits",), None
        load = load_model = encode = evaluate = expected_data = PlainParity.load

    for task in (ProtocolOnly(), object()):
        with pytest.raises(TypeError, match="is not a task: subclass adalora_scores.tasks.TaskBase"):
            register_task(task)
    assert "test_protocol_only" not in list_tasks()


def test_a_task_gets_the_default_hooks_it_does_not_override(plain_task):
    assert get_task(plain_task.name) is plain_task  # the registry keeps the object as registered
    run_task = configure_task(plain_task.name)
    assert run_task is plain_task  # no options: the task itself
    assert (run_task.name, run_task.output_names, run_task.group_key) == (plain_task.name, ("logits",), None)
    assert run_task.default_max_seq_length == 128 == TrainConfig(task=plain_task.name).max_seq_length
    assert run_task.run_files() == {"plain.json": {"written_by": "test_plain_parity"}}  # its own hook
    assert run_task.generation_request([]) is None  # TaskBase's default
    parameters = inspect.signature(run_task.load_model).parameters.values()
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)  # its own load_model(name)
    with pytest.raises(ValueError, match="takes no task_options"):
        configure_task(plain_task.name, {"colour": "red"})


def test_a_task_with_one_hook_trains(plain_task, tmp_path, tiny_model_dir):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                plain_task.name,
                "--model",
                str(tiny_model_dir),
                "--output",
                str(out),
                "num_epochs=1",
                "batch_size=4",
                "init_r=2",
                "target_r=1",
                "mask_interval=1",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["task"] == plain_task.name and 0 <= metrics["eval"]["dev"]["accuracy"] <= 1
    assert json.loads((out / "plain.json").read_text()) == {"written_by": plain_task.name}


# -- the task modules and the config --------------------------------------------------------------------------------
def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, only for type checking) of every ``adalora_scores`` import in ``path``, at any depth."""
    tree = _tree(path)
    checking: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            checking |= set(ast.walk(node))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("adalora_scores"):
            found.append((node.module, node in checking))
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names if alias.name.startswith("adalora_scores")]
            found += [(name, node in checking) for name in names]
    return found


def test_the_config_imports_no_task():
    assert not [module for module, _ in _imports(PACKAGE / "config.py") if module.startswith("adalora_scores.tasks")]


def test_the_tasks_import_the_config_for_type_checking_only():
    for path in (PACKAGE / "tasks").rglob("*.py"):
        runtime = [module for module, typing_only in _imports(path) if not typing_only]
        assert "adalora_scores.config" not in runtime, path


@pytest.mark.parametrize(
    ("package", "borrowed"),
    [("glue", ()), ("squad", ()), ("classification", ()), ("causal_lm", ()), *[(name, ("glue",)) for name in BUNDLED]],
)
def test_a_task_package_borrows_nothing_from_another(package, borrowed):
    """Only the shared modules; the bundled tasks are GLUE tasks in SST-2's layout (``glue``'s ``BundledTask``)."""
    shared = {"base", "data", "tables", package, *borrowed}
    for path in (PACKAGE / "tasks" / package).glob("*.py"):
        for module, _ in _imports(path):
            if module.startswith("adalora_scores.tasks."):
                assert module.split(".")[2] in shared, f"{path.name} imports {module}"


def test_no_task_module_defines_a_module_getattr():
    for path in (PACKAGE / "tasks").rglob("*.py"):
        assert not [
            node for node in _tree(path).body if isinstance(node, ast.FunctionDef) and node.name == "__getattr__"
        ], path


def test_the_registry_lists_the_built_ins():
    assert set(BUILT_INS) <= set(list_tasks())
