"""The task options of ``squad`` and ``squad_v2`` (``task_options`` in a preset or sweep file,
``task_options.NAME=value`` on the command line): how contexts are windowed and how answers are extracted. Their
names are also accepted at the top level of a config (``adalora_scores.config.TASK_OPTION_ALIASES``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from adalora_scores.tasks.base import check_option_names, task_option

__all__ = ["SquadOptions"]


@dataclass(frozen=True)
class SquadOptions:
    """Every option has a default (the values of the AdaLoRA reference script and of transformers' ``run_qa.py``)."""

    doc_stride: int = task_option(128, "overlap in tokens between consecutive windows of a long context")
    max_answer_length: int = task_option(30, "longest answer span in tokens")
    n_best_size: int = task_option(20, "start and end candidates per window (n_best² spans)")
    null_score_diff_threshold: float = task_option(
        0.0, "SQuAD v2.0: answer 'no answer' when null score − best span score exceeds this"
    )

    @classmethod
    def known(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def parse(cls, options: Mapping[str, Any], task: str = "squad") -> SquadOptions:
        """Validated options of the task ``task``; an unknown name lists the known ones, a bad value says what it
        must be."""
        check_option_names(options, cls.known(), task, "doc_stride: 128")
        values: dict[str, Any] = {}
        for name, value in options.items():
            if name == "null_score_diff_threshold":
                values[name] = _number(name, value)
            else:
                values[name] = _whole_number(name, value, minimum=0 if name == "doc_stride" else 1)
        return cls(**values)

    def check(self, max_seq_length: int) -> None:
        """Windows of ``max_seq_length`` tokens must advance: ``doc_stride`` is smaller than ``max_seq_length``."""
        if not 0 <= self.doc_stride < max_seq_length:
            raise ValueError(
                f"task_options.doc_stride ({self.doc_stride}) must be in [0, max_seq_length="
                f"{max_seq_length}); e.g. 128 with 384."
            )


def _whole_number(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"a whole number >= {minimum}"
        raise ValueError(f"task_options.{name} must be {what}, got {value!r}.")
    return value


def _number(name: str, value: Any) -> float:
    """A number (not NaN); text that reads as one (YAML 1.1 reads ``1e-3`` as text) counts."""
    try:
        number = float(value) if not isinstance(value, bool) and isinstance(value, (int, float, str)) else math.nan
    except ValueError:
        number = math.nan
    if math.isnan(number):
        raise ValueError(f"task_options.{name} must be a number, e.g. 0.0, got {value!r}.")
    return number
