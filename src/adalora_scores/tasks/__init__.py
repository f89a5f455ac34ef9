"""Tasks by name: the GLUE tasks (and, with the SQuAD issue, extractive QA)."""

from __future__ import annotations

import difflib

from adalora_scores.tasks.glue import GLUE_TASKS, Example, GlueTask, TaskData, load_glue

__all__ = ["GLUE_TASKS", "Example", "GlueTask", "TaskData", "get_task", "list_tasks", "load_glue"]


def list_tasks() -> list[str]:
    return sorted(GLUE_TASKS)


def get_task(name: str) -> GlueTask:
    """The task called ``name`` (case-insensitive, "sst-2" = "sst2"); an unknown name lists the known ones."""
    key = str(name).lower().replace("-", "")
    if key in GLUE_TASKS:
        return GLUE_TASKS[key]
    close = difflib.get_close_matches(key, GLUE_TASKS, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"unknown task {name!r}.{hint} Known tasks: {', '.join(list_tasks())}.")
