"""Which way is better for each metric: a small registry that tuned reporting (``study/tuning.py``) reads.

Every metric is higher-is-better unless it is registered as lower-is-better here: accuracy, F1, correlations, exact
match and every other metric this library writes are higher-is-better; errors and losses are lower-is-better. A task
with a new lower-is-better metric calls :func:`register_metric_direction` once, next to its ``register_task``.
"""

from __future__ import annotations

__all__ = ["LOWER_IS_BETTER", "higher_is_better", "register_metric_direction"]

LOWER_IS_BETTER: set[str] = {"mse", "rmse", "mae", "loss", "eval_loss", "perplexity", "error_rate"}
"""Metric names where a smaller value is better (all others: larger is better)."""


def higher_is_better(metric: str) -> bool:
    """True unless ``metric`` is registered as lower-is-better (default: higher is better)."""
    return str(metric) not in LOWER_IS_BETTER


def register_metric_direction(metric: str, higher_is_better: bool) -> None:
    """Declare the direction of ``metric`` (overrides an earlier declaration of the same name)."""
    if not isinstance(higher_is_better, bool):
        raise TypeError(f"higher_is_better must be True or False, got {higher_is_better!r}.")
    if higher_is_better:
        LOWER_IS_BETTER.discard(str(metric))
    else:
        LOWER_IS_BETTER.add(str(metric))
