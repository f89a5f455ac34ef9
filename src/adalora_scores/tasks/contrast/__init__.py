"""The bundled task ``contrast_sentiment``, the demo's synthetic task (``task.py``)."""

from adalora_scores.tasks.contrast.task import (
    CONTRAST_TASK,
    DEV_SIZE,
    TRAIN_SIZE,
    ContrastTask,
    make_examples,
    write_contrast_task,
)

__all__ = ["CONTRAST_TASK", "DEV_SIZE", "TRAIN_SIZE", "ContrastTask", "make_examples", "write_contrast_task"]
