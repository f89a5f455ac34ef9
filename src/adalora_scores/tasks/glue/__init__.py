"""The nine GLUE tasks (``task.py``; their examples and encoding are ``adalora_scores.tasks.data``)."""

from adalora_scores.tasks.glue.task import GLUE_TASKS, BundledTask, GlueTask, load_glue

__all__ = ["GLUE_TASKS", "BundledTask", "GlueTask", "load_glue"]
