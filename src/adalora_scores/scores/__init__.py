"""Element-wise importance scores and their registry. Importing this package registers the built-in scores."""

from adalora_scores.scores import (  # noqa: F401  (registers the built-ins)
    fisher,
    gsnr,
    magnitude,
    movement,
    sensitivity,
    sensitivity_only,
    taylor,
)
from adalora_scores.scores.base import (
    Score,
    check_beta,
    create_score,
    ema_,
    get_score_class,
    list_scores,
    register_score,
)

__all__ = ["Score", "check_beta", "create_score", "ema_", "get_score_class", "list_scores", "register_score"]
