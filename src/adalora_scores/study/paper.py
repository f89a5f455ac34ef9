"""Column definitions of the score-function study's tables and its published numbers.

Source: Myoungjun Kim, Seoyun Park, Yeeun Ma and Jin-Hyun Ahn (Myongji University), "A Study on Performance
Enhancement of Parameter-Efficient Fine-Tuning via Score Function Variation in AdaLoRA", Table 1 (GLUE dev,
DeBERTa-v3-base) and Table 2 (SQuAD v1.1/v2.0 dev EM/F1). Its rows map to our
scores by the paper's definitions (:data:`PAPER_ROWS`): AdaLoRA(Original) = ``sensitivity``, Movement =
``movement``, and Fisher E[g²] and GSNR E[g]²/Var[g], which the paper defines as moments over examples, =
``fisher_per_example`` and ``gsnr_per_example``. The mini-batch ``fisher`` and ``gsnr`` (one mini-batch gradient per
step) are ablation rows without a paper value. The paper reports single runs; its "All Ave." is the mean of the nine
GLUE columns with MNLI m and mm counted separately (checked: it reproduces the printed averages from the printed
columns). Its "CoLA Acc" header is read as Matthews correlation, the CoLA metric, and "STS-B Corr" as Pearson
correlation (as in the AdaLoRA paper).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Column", "GLUE_AVERAGE_PARTS", "PAPER", "PAPER_ROWS", "TABLE1", "TABLE2"]


@dataclass(frozen=True)
class Column:
    label: str
    task: str
    split: str
    metric: str


TABLE1 = (
    Column("MRPC Acc", "mrpc", "dev", "accuracy"),
    Column("SST-2 Acc", "sst2", "dev", "accuracy"),
    Column("CoLA Mcc", "cola", "dev", "matthews_correlation"),
    Column("QQP Acc", "qqp", "dev", "accuracy"),
    Column("QNLI Acc", "qnli", "dev", "accuracy"),
    Column("RTE Acc", "rte", "dev", "accuracy"),
    Column("MNLI m", "mnli", "dev_matched", "accuracy"),
    Column("MNLI mm", "mnli", "dev_mismatched", "accuracy"),
    Column("STS-B Corr", "stsb", "dev", "pearson"),
)
TABLE2 = (
    Column("SQuAD v1.1 EM", "squad", "dev", "exact_match"),
    Column("SQuAD v1.1 F1", "squad", "dev", "f1"),
    Column("SQuAD v2.0 EM", "squad_v2", "dev", "exact"),
    Column("SQuAD v2.0 F1", "squad_v2", "dev", "f1"),
)

# The standard GLUE-style average over the eight tasks (WNLI excluded): one number per task, the mean of its
# metrics where it has two (MRPC and QQP accuracy and F1, STS-B Pearson and Spearman, MNLI matched and mismatched).
GLUE_AVERAGE_PARTS: dict[str, tuple[tuple[str, str], ...]] = {
    "mrpc": (("dev", "accuracy"), ("dev", "f1")),
    "sst2": (("dev", "accuracy"),),
    "cola": (("dev", "matthews_correlation"),),
    "qqp": (("dev", "accuracy"), ("dev", "f1")),
    "qnli": (("dev", "accuracy"),),
    "rte": (("dev", "accuracy"),),
    "mnli": (("dev_matched", "accuracy"), ("dev_mismatched", "accuracy")),
    "stsb": (("dev", "pearson"), ("dev", "spearman")),
}

PAPER_ROWS: dict[str, str] = {
    "sensitivity": "AdaLoRA(Original): |w·g| smoothed, times its uncertainty, from the mini-batch gradient",
    "movement": "Movement: −w·g, from the mini-batch gradient",
    "fisher_per_example": "Fisher: E[g²] over the examples of each step (per-example gradients)",
    "gsnr_per_example": "GSNR: E[g]²/Var[g] over the examples of each step (per-example gradients)",
}
"""Our score for each of the paper's rows → the paper's row and the estimator it uses."""

_T1 = {
    "sensitivity": (89.95, 95.41, 67.58, 89.81, 93.86, 83.39, 89.38, 89.37, 91.77),
    "movement": (90.44, 94.49, 68.23, 90.51, 93.70, 86.28, 89.78, 89.61, 91.27),
    "fisher_per_example": (89.46, 95.64, 69.69, 91.64, 93.89, 85.56, 90.41, 90.39, 91.33),
    "gsnr_per_example": (88.73, 94.38, 67.28, 91.60, 93.76, 85.56, 90.36, 90.50, 90.35),
}
_T2 = {
    "sensitivity": (87.38, 93.52, 84.53, 87.58),
    "movement": (87.54, 93.68, 85.98, 88.88),
    "fisher_per_example": (88.12, 93.93, 85.67, 88.50),
    "gsnr_per_example": (88.48, 94.23, 86.09, 88.97),
}
PAPER_ALL_AVERAGE = {"sensitivity": 87.84, "movement": 88.26, "fisher_per_example": 88.67, "gsnr_per_example": 88.06}
"""The printed "All Ave." column, kept to check our averaging convention against it."""

PAPER: dict[tuple[str, str], float] = {
    (score, column.label): value
    for table, columns in ((_T1, TABLE1), (_T2, TABLE2))
    for score, values in table.items()
    for column, value in zip(columns, values, strict=True)
}
"""(score, column label) → the study's value."""
PAPER.update({(score, "All Ave."): value for score, value in PAPER_ALL_AVERAGE.items()})
