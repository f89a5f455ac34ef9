"""Experiment trackers through accelerate (``report_to=tensorboard|wandb|none``).

Logged at every optimizer step: ``train/loss`` (the global batch's loss), ``train/learning_rate`` and
``train/budget`` (b(t)); at every allocation: ``kept_rank/<type>`` (the kept rank summed over the matrices of each
module type: q, k, v, o, f1, f2, gate, up, down, qkv) and ``allocation/churn`` (the share of the triplets kept now
that were not kept at the previous allocation, |K_t \\ K_{t−1}| / |K_t|). TensorBoard event files go to
``<run folder>/tensorboard/``; W&B uses its own settings (``WANDB_*`` environment variables, offline mode included).
"""

from __future__ import annotations

import importlib.util
from typing import Any

from accelerate import Accelerator

from adalora_scores.config import TrainConfig
from adalora_scores.engine.module_types import module_type

__all__ = ["TRACKERS", "allocation_scalars", "check_tracker", "log_step", "start_tracking"]

TRACKERS = ("none", "tensorboard", "wandb")
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_tracker(report_to: str) -> str | None:
    """accelerate's ``log_with`` for ``report_to``; a clear error when the tracker's package is missing."""
    if report_to == "none":
        return None
    package = _PACKAGES[report_to]
    if importlib.util.find_spec(package) is None:
        raise ModuleNotFoundError(
            f"report_to={report_to} needs the {package} package: pip install {package} (or report_to=none)."
        )
    return report_to


def start_tracking(accelerator: Accelerator, config: TrainConfig, run_name: str) -> None:
    """Start the configured tracker with the run's config (non-scalar values as text, as TensorBoard's hparams
    need)."""
    if config.report_to == "none":
        return
    values = {k: v if isinstance(v, (int, float, str, bool)) else str(v) for k, v in config.to_dict().items()}
    accelerator.init_trackers(run_name, config=values)


def allocation_scalars(ranks: dict[str, int], churn: float | None) -> dict[str, float]:
    """``kept_rank/<type>`` summed per module type, and ``allocation/churn`` when there was an earlier allocation."""
    scalars: dict[str, float] = {}
    for name, rank in ranks.items():
        key = f"kept_rank/{module_type(name) or 'other'}"
        scalars[key] = scalars.get(key, 0) + rank
    if churn is not None:
        scalars["allocation/churn"] = churn
    return scalars


def log_step(accelerator: Accelerator, config: TrainConfig, values: dict[str, Any], step: int) -> None:
    if config.report_to != "none":
        accelerator.log(values, step=step)
