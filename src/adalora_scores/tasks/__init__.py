"""Tasks by name: the nine GLUE tasks and SQuAD v1.1/v2.0.

Every task offers the same interface to the training loop:

* ``name``, ``main_metric``, ``eval_splits``, ``modules_to_save`` (the head trained fully), ``output_names`` (the
  model outputs evaluation gathers);
* ``load(data)``: examples from the Hub (``data`` None) or a local folder, as ``.train`` and ``.evals[split]``;
* ``load_model(name)``: the model with the task's head;
* ``encode(examples, tokenizer, config, train=...)``: a dataset of unpadded features with ``lengths``;
* ``score(outputs, dataset, config)``: ``(metrics, files)`` from the gathered outputs, files being JSON objects to
  write into the run folder (SQuAD's ``predictions.json``).
"""

from __future__ import annotations

import difflib

from adalora_scores.tasks.glue import GLUE_TASKS, Example, GlueTask, TaskData, load_glue
from adalora_scores.tasks.squad import SQUAD_TASKS, SquadTask

__all__ = [
    "GLUE_TASKS",
    "SQUAD_TASKS",
    "Example",
    "GlueTask",
    "SquadTask",
    "TaskData",
    "get_task",
    "list_tasks",
    "load_glue",
]

_TASKS: dict[str, GlueTask | SquadTask] = {**GLUE_TASKS, **SQUAD_TASKS}


def list_tasks() -> list[str]:
    return sorted(_TASKS)


def _key(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "")


def get_task(name: str) -> GlueTask | SquadTask:
    """The task called ``name`` (case-insensitive; "sst-2" = "sst2", "squad-v2" = "squad_v2"); an unknown name lists
    the known ones."""
    by_key = {_key(task): task for task in _TASKS}
    if _key(name) in by_key:
        return _TASKS[by_key[_key(name)]]
    close = difflib.get_close_matches(str(name).lower(), list(_TASKS), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(list_tasks())}.")
