"""The task interface the training loop, sweeps and reports use, and the task registry.

A task is an object with these attributes and methods (:class:`Task`, a ``typing.Protocol``: any class that has
them is a task; no base class is needed). Adding a task is one file that builds one and calls
:func:`register_task`; ``tasks/glue``, ``tasks/squad``, ``tasks/classification`` and ``tasks/contrast.py`` are the
built-ins.

Two optional methods, looked up by name (a task without them takes no options and writes no extra files):

* ``with_options(options: dict) -> Task``: the task of one run, bound to the config's ``task_options`` (validated:
  unknown names and missing required options are errors). A task without it takes no options.
  :func:`configure_task` is the one place that calls it.
* ``run_files() -> dict[str, Any]``: JSON objects the run folder keeps next to the adapter (``classification``:
  ``labels.json``, the label mapping), asked for after evaluation.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch

__all__ = ["Task", "configure_task", "get_task", "list_tasks", "register_task"]


@runtime_checkable
class Task(Protocol):
    """What a task provides.

    Attributes:
        name: the registry name (lowercase, e.g. ``mrpc``).
        main_metric: the metric key that ranks runs (tuned mode picks on it).
        eval_splits: the evaluation splits ``load`` returns, e.g. ``("dev",)``.
        modules_to_save: the head trained fully next to the adapter.
        output_names: the model outputs that evaluation gathers (``logits``; SQuAD: start and end logits).
        group_key: an example attribute whose equal values stay on one side of the held-out selection split
            (SQuAD: ``context``), or None.
    """

    name: str
    main_metric: str
    eval_splits: tuple[str, ...]
    modules_to_save: ClassVar[tuple[str, ...]]
    output_names: ClassVar[tuple[str, ...]]
    group_key: ClassVar[str | None]

    def load(self, data: str | Path | None) -> Any:
        """Examples from the Hub (``data`` None) or a local folder, as an object with ``.train`` (a list) and
        ``.evals`` (split name → list)."""
        ...

    def load_model(self, name: str, **model_options: Any) -> torch.nn.Module:
        """The model ``name`` (Hub name or folder) with this task's head. ``model_options`` are extra
        ``from_pretrained`` keywords from the engine (``dtype`` with ``torch_dtype``, ``quantization_config`` with
        ``load_in_4bit``), to pass on unchanged."""
        ...

    def encode(self, examples: list[Any], tokenizer: Any, config: Any, *, train: bool) -> Any:
        """A dataset of unpadded features with ``lengths`` (see ``engine/data.py``)."""
        ...

    def evaluate(self, outputs: dict[str, torch.Tensor], dataset: Any, config: Any) -> tuple[dict[str, float], dict]:
        """``(metrics, files)`` from the gathered outputs; ``files`` are JSON objects written into the run folder."""
        ...

    def expected_data(self) -> str:
        """The expected local data files, in words, for error messages."""
        ...


_REGISTRY: dict[str, Task] = {}


def _key(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "")


def register_task(task: Task) -> Task:
    """Add ``task`` to the registry under ``task.name``; returns it.

    Raises:
        ValueError: a task of that name (or one that differs only in case, ``-`` and ``_``) is registered.
        TypeError: ``task`` lacks part of the :class:`Task` interface.
    """
    if not isinstance(task, Task):
        interface = ("name", "main_metric", "eval_splits", "modules_to_save", "output_names", "group_key", "load",
                     "load_model", "encode", "evaluate", "expected_data")  # fmt: skip
        missing = [name for name in interface if not hasattr(task, name)]
        raise TypeError(f"{task!r} is not a task: it lacks {missing} (see adalora_scores.tasks.Task).")
    clash = [name for name in _REGISTRY if _key(name) == _key(task.name)]
    if clash:
        raise ValueError(f"a task named {clash[0]!r} is already registered ({_REGISTRY[clash[0]]!r}); choose another "
                         "name.")  # fmt: skip
    _REGISTRY[task.name] = task
    return task


def list_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    return sorted(_REGISTRY)


def get_task(name: str) -> Task:
    """The task called ``name`` (case-insensitive; "sst-2" = "sst2", "squad-v2" = "squad_v2"); an unknown name lists
    the known ones."""
    by_key = {_key(task): task for task in _REGISTRY}
    if _key(name) in by_key:
        return _REGISTRY[by_key[_key(name)]]
    close = difflib.get_close_matches(str(name).lower(), list(_REGISTRY), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(list_tasks())}.")


def configure_task(name: str, options: Mapping[str, Any] | None = None) -> Task:
    """The task ``name`` for one run with its ``task_options``: ``task.with_options(options)`` where the task has
    options; the registered task itself otherwise, which refuses any option."""
    task = get_task(name)
    options = dict(options or {})
    with_options = getattr(task, "with_options", None)
    if with_options is not None:
        return with_options(options)
    if options:
        raise ValueError(f"task {task.name} takes no task_options (got {', '.join(map(str, options))}); remove "
                         "them, or use --task classification for your own data.")  # fmt: skip
    return task
