"""The nine GLUE tasks: data and metrics (their examples and encoding are ``adalora_scores.tasks.data``)."""

from adalora_scores.tasks.glue.data import GLUE_TASKS, GlueTask, load_glue

__all__ = ["GLUE_TASKS", "GlueTask", "load_glue"]
