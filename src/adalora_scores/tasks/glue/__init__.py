"""The nine GLUE tasks: data, encoding, metrics."""

from adalora_scores.tasks.glue.data import GLUE_TASKS, Example, GlueTask, TaskData, load_glue
from adalora_scores.tasks.glue.features import EncodedDataset

__all__ = ["GLUE_TASKS", "EncodedDataset", "Example", "GlueTask", "TaskData", "load_glue"]
