"""GLUE dev-set metrics, computed offline with scikit-learn and scipy. Values are in percent, as papers report them.

Metric per task (GLUE paper, Wang et al. 2018; huggingface/evaluate ``metrics/glue``):

========  =======================================================
CoLA      Matthews correlation (``matthews_correlation``)
STS-B     Pearson and Spearman correlation, and their mean (``corr``)
MRPC/QQP  accuracy and F1 of the positive class, and their mean
others    accuracy
========  =======================================================
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

__all__ = ["glue_metrics"]


def glue_metrics(metric: str, predictions: Sequence[float], references: Sequence[float]) -> dict[str, float]:
    """Compute a GLUE metric family.

    Args:
        metric: ``"matthews"``, ``"pearson_spearman"``, ``"accuracy_f1"`` or ``"accuracy"``.
        predictions: predicted class ids (or scores for STS-B).
        references: gold labels.

    Returns:
        Metric name → value in percent.
    """
    predictions, references = np.asarray(predictions), np.asarray(references)
    if predictions.shape != references.shape or predictions.ndim != 1 or len(predictions) == 0:
        raise ValueError(
            f"predictions {predictions.shape} and references {references.shape} must be equal-length 1-D arrays."
        )
    if metric == "matthews":
        return {"matthews_correlation": 100 * float(matthews_corrcoef(references, predictions))}
    if metric == "pearson_spearman":
        pearson = 100 * float(pearsonr(predictions, references)[0])
        spearman = 100 * float(spearmanr(predictions, references)[0])
        return {"pearson": pearson, "spearman": spearman, "corr": (pearson + spearman) / 2}
    accuracy = 100 * float(accuracy_score(references, predictions))
    if metric == "accuracy":
        return {"accuracy": accuracy}
    if metric == "accuracy_f1":
        f1 = 100 * float(f1_score(references, predictions))
        return {"accuracy": accuracy, "f1": f1, "accuracy_f1": (accuracy + f1) / 2}
    raise ValueError(f"unknown GLUE metric {metric!r}; use matthews, pearson_spearman, accuracy_f1 or accuracy.")
