"""The task options of ``classification`` (``task_options`` in a preset or sweep file, ``task_options.NAME=value`` on
the command line): which columns hold the text and the label, and where the data comes from."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adalora_scores.metrics.classification import CLASSIFICATION_METRICS, REGRESSION_METRICS
from adalora_scores.tasks.base import check_option_names, task_option
from adalora_scores.tasks.tables import check_data_options

__all__ = ["EXAMPLE", "ClassificationOptions"]

EXAMPLE = (
    "e.g. adalora-scores train --task classification --data reviews/ task_options.text_column=review "
    "task_options.label_column=sentiment ..."
)


@dataclass(frozen=True)
class ClassificationOptions:
    """The task options of ``classification``; only ``text_column`` is required."""

    text_column: str = task_option("", "the column holding the text, e.g. review")
    text_pair_column: str | None = task_option(None, "a second text column for sentence pairs, e.g. hypothesis")
    label_column: str = task_option("label", "the column holding the label")
    regression: bool = task_option(False, "the label is a number: one output, MSE loss")
    main_metric: str | None = task_option(
        None,
        "the metric that ranks runs: accuracy (default), macro_f1 or matthews_correlation (two "
        "classes); regression: pearson (default), spearman or mse",
    )
    train_file: str | None = task_option(None, "training file (with dev_file; instead of --data)")
    dev_file: str | None = task_option(None, "evaluation file (with train_file)")
    hub_dataset: str | None = task_option(None, "a Hub dataset name, instead of local files")
    hub_config: str | None = task_option(None, "the Hub dataset's configuration name")
    train_split: str = task_option("train", "the Hub split to train on")
    dev_split: str = task_option("validation", "the Hub split to evaluate on")

    @classmethod
    def known(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> ClassificationOptions:
        """Validated options; an unknown name lists the known ones, a missing required one gives an example."""
        check_option_names(options, cls.known(), "classification", "text_column: review")
        values: dict[str, Any] = {}
        for name, value in options.items():
            if name == "regression":
                if not isinstance(value, bool):
                    raise ValueError(f"task_options.regression must be true or false, got {value!r}.")
            elif value is not None:
                if isinstance(value, (dict, list, bool)):
                    raise ValueError(f"task_options.{name} must be a name or path, got {value!r}.")
                value = str(value)
            values[name] = value
        parsed = cls(**values)
        if not parsed.text_column:
            raise ValueError(
                f"task classification needs task_options.text_column, the column holding the text; {EXAMPLE}"
            )
        check_data_options(parsed.train_file, parsed.dev_file, parsed.hub_dataset, "train.csv dev.csv")
        allowed = REGRESSION_METRICS if parsed.regression else CLASSIFICATION_METRICS
        if parsed.main_metric is not None and parsed.main_metric not in allowed:
            kind = "regression" if parsed.regression else "classification"
            raise ValueError(
                f"task_options.main_metric={parsed.main_metric} is not a {kind} metric; use one of "
                f"{', '.join(allowed)}."
            )
        return parsed
