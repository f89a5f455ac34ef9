"""Metrics of the ``classification`` task, computed offline with scikit-learn and scipy, in percent as GLUE's are
(except ``mse``, which is in the target's squared units).

Classification (predicted class ids against gold class ids):

* ``accuracy`` = correct / N;
* ``macro_f1`` = the unweighted mean over the classes of F1_c = 2·TP_c / (2·TP_c + FP_c + FN_c)
  (``sklearn.metrics.f1_score(average="macro")``), over every class of the label mapping, so a class that is
  never predicted counts with F1 0 (scikit-learn's ``zero_division=0``);
* ``matthews_correlation`` (two classes only) = (TP·TN − FP·FN) / √((TP+FP)(TP+FN)(TN+FP)(TN+FN)), 0 when a
  factor is 0 (Matthews 1975; ``sklearn.metrics.matthews_corrcoef``, as GLUE's CoLA).

Regression (predicted values against gold values): ``pearson`` (``scipy.stats.pearsonr``), ``spearman``
(``scipy.stats.spearmanr``; the Pearson correlation of the ranks) and ``mse`` = mean (ŷ − y)² (lower is better).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

__all__ = ["CLASSIFICATION_METRICS", "REGRESSION_METRICS", "classification_metrics", "regression_metrics"]

CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "matthews_correlation")
"""What :func:`classification_metrics` can return (``matthews_correlation`` for two classes only)."""
REGRESSION_METRICS = ("pearson", "spearman", "mse")


def _arrays(predictions: Sequence[float], references: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    predictions, references = np.asarray(predictions), np.asarray(references)
    if predictions.shape != references.shape or predictions.ndim != 1 or len(predictions) == 0:
        raise ValueError(
            f"predictions {predictions.shape} and references {references.shape} must be equal-length 1-D arrays."
        )
    return predictions, references


def classification_metrics(
    predictions: Sequence[int], references: Sequence[int], num_classes: int
) -> dict[str, float]:
    """Accuracy and macro-F1 over the classes ``0 .. num_classes - 1``, plus Matthews correlation when
    ``num_classes == 2``; in percent."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}.")
    predictions, references = _arrays(predictions, references)
    classes = list(range(num_classes))
    result = {
        "accuracy": 100 * float(accuracy_score(references, predictions)),
        "macro_f1": 100 * float(f1_score(references, predictions, labels=classes, average="macro", zero_division=0)),
    }
    if num_classes == 2:
        result["matthews_correlation"] = 100 * float(matthews_corrcoef(references, predictions))
    return result


def regression_metrics(predictions: Sequence[float], references: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation in percent, and the mean squared error in the target's squared units.

    A correlation is undefined (NaN, as scipy returns it) when the predictions or the references are constant."""
    predictions, references = _arrays(predictions, references)
    predictions, references = predictions.astype(float), references.astype(float)
    constant = np.ptp(predictions) == 0 or np.ptp(references) == 0
    pearson = float("nan") if constant else 100 * float(pearsonr(predictions, references)[0])
    spearman = float("nan") if constant else 100 * float(spearmanr(predictions, references)[0])
    return {"pearson": pearson, "spearman": spearman, "mse": float(np.mean((predictions - references) ** 2))}
