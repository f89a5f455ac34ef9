"""Element-wise importance scores and their registry. Importing this package registers the built-in scores."""

from adalora_scores.scores import (  # noqa: F401  (registers the built-ins)
    controls,
    fisher,
    fisher_per_example,
    gsnr,
    gsnr_per_example,
    magnitude,
    movement,
    sensitivity,
    sensitivity_only,
    taylor,
    taylor_per_example,
)
from adalora_scores.scores.base import (
    GradientMoments,
    Score,
    check_beta,
    create_score,
    ema_,
    get_score_class,
    list_scores,
    register_score,
)

__all__ = [
    "GradientMoments",
    "Score",
    "check_beta",
    "create_score",
    "ema_",
    "get_score_class",
    "list_scores",
    "register_score",
]
