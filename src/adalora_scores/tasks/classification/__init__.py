"""The ``classification`` task: any labelled text from CSV, TSV, JSON, JSONL, Parquet or the Hub.

``files`` (the table reader, also used by the GLUE loaders) imports nothing of the tasks, so this package can be
imported from ``tasks/glue`` without a cycle; the task module loads on first use of its names (``import
adalora_scores.tasks`` registers it).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CLASSIFICATION_TASK", "LABELS_FILE", "ClassificationOptions", "ClassificationTask", "base_model_for_run",
           "read_labels"]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in __all__:
        from adalora_scores.tasks.classification import task

        return getattr(task, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
