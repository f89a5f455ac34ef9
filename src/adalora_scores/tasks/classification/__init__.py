"""The ``classification`` task: any labelled text from CSV, TSV, JSON, JSONL, Parquet or the Hub (``task.py``), with
its options (``options.py``).

Importing this package registers the task (``import adalora_scores.tasks`` does).
"""

from __future__ import annotations

from adalora_scores.tasks.classification.options import ClassificationOptions
from adalora_scores.tasks.classification.task import (
    CLASSIFICATION_TASK,
    LABELS_FILE,
    ClassificationTask,
    base_model_for_run,
    read_labels,
)

__all__ = [
    "CLASSIFICATION_TASK",
    "LABELS_FILE",
    "ClassificationOptions",
    "ClassificationTask",
    "base_model_for_run",
    "read_labels",
]
