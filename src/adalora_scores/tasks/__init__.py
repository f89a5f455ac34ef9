"""Tasks by name, from a registry: the nine GLUE tasks, SQuAD v1.1/v2.0, ``classification`` (any labelled text,
configured by ``task_options``), ``causal_lm`` (instruction tuning of decoders), the demo's synthetic task and
``tweet_sentiment``.

Importing this package registers the built-ins. The contract is :class:`TaskBase` (``tasks/base.py``); each built-in
task is ``tasks/<name>/task.py`` with its options beside it, and a new task is one file that subclasses
:class:`TaskBase` and calls :func:`register_task`. Shared data types are in ``tasks/data.py``, the file readers in
``tasks/tables.py``.
"""

from __future__ import annotations

from adalora_scores.tasks import causal_lm, contrast, glue, squad, tweet_sentiment  # noqa: F401  (registers the built-ins)
from adalora_scores.tasks.base import (
    TASKS,
    GenerationRequest,
    Predictions,
    TaskBase,
    check_run_config,
    configure_run,
    configure_task,
    get_task,
    list_tasks,
    register_task,
)
from adalora_scores.tasks.classification.task import ClassificationTask
from adalora_scores.tasks.data import EncodedDataset, Example, TaskData
from adalora_scores.tasks.glue import GLUE_TASKS, GlueTask, load_glue
from adalora_scores.tasks.squad import SQUAD_TASKS, SquadTask

__all__ = [
    "GLUE_TASKS",
    "SQUAD_TASKS",
    "TASKS",
    "ClassificationTask",
    "EncodedDataset",
    "Example",
    "GenerationRequest",
    "GlueTask",
    "Predictions",
    "SquadTask",
    "TaskBase",
    "TaskData",
    "check_run_config",
    "configure_run",
    "configure_task",
    "get_task",
    "list_tasks",
    "load_glue",
    "register_task",
]
