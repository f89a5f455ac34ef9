"""Score diagnostics: does a score estimate something stable, and how does it spend the rank budget over training?

A *triplet* is one rank-one component (P[:, i], λ_i, Q[i, :]) of an adapted matrix, named ``(matrix, i)``. K is a
set of kept triplets. Every measure here reads run-folder files only (``rank_pattern.json``, ``allocations.jsonl``,
``triplet_scores.json``, see :mod:`adalora_scores.runs.files`); LoRA baselines have no triplets and take no part.

* **Agreement** (Jaccard) of two final kept sets: J(A, B) = |A ∩ B| / |A ∪ B| (1 when both are empty). Between two
  scores it is taken on the same seed (same initialisation and data order) and averaged over the seeds both ran.
* **Reliability**: the same J between *seeds* of one score, averaged over all seed pairs. A score that disagrees
  with itself across seeds measures noise, whatever it is called. Its reference is the chance level: the expected J
  of two uniformly random kept sets of the same sizes k₁, k₂ out of N triplets, E[J] = Σ_i h(i) · i / (k₁ + k₂ − i),
  with h the hypergeometric law of |A ∩ B| (population N, k₁ marked, k₂ drawn); for k₁ = k₂ = k it is close to
  p / (2 − p), p = k / N.
* **Is the reliability above chance?** H0: each seed's kept set is an independent uniformly random subset of the
  same size of the same triplets. The one-sided p-value is P(statistic ≥ observed | H0), the statistic being the mean
  J over seed pairs. For two seeds it is exact: J = i / (k₁ + k₂ − i) grows with i = |A ∩ B|, so
  p = P(I ≥ i_obs) = ``hypergeom.sf(i_obs − 1, N, k₁, k₂)``. For three or more seeds it is a seeded permutation test
  (:data:`PERMUTATIONS` draws, seed :data:`PERMUTATION_SEED`): every seed's kept set but the first is moved by an
  independent uniformly random permutation of the triplets (the first stays as observed, which leaves the law of the
  statistic under H0 unchanged), and p = (1 + #{draws ≥ observed}) / (1 + draws) (Phipson & Smyth 2010, "Permutation
  p-values should never be zero").
* **Spearman** correlation ρ of the final triplet scores S_i of two runs (the ranking the last allocation used),
  over the triplets both have: between scores on the same seed, within a score between seeds (its reliability).
* **Churn** at allocation t: churn_t = |K_t \\ K_{t−1}| / |K_t|, the share of the kept set that was not kept at the
  previous allocation. Not the symmetric difference: the budget shrinks by schedule, so |K_{t−1} \\ K_t| is mostly
  forced pruning that every score does alike. |K_t \\ K_{t−1}| counts only triplets brought back, each of which
  pushed out one more that was kept: the score changed its mind. 0 means the kept sets are nested (the score only
  prunes), 1 that the whole kept set was replaced.
* **Rank trajectory**: the mean kept rank per matrix of each module type (q, k, v, o, f1, f2, ...,
  :mod:`adalora_scores.engine.module_types`) at every allocation, starting at step 0 with the initial ranks.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import hypergeom, spearmanr

from adalora_scores.allocation.ranking import churn
from adalora_scores.engine.module_types import module_type, ordered_types
from adalora_scores.runs.files import read_allocations, read_rank_pattern, read_triplet_scores, split_kept
from adalora_scores.study.results import RunRecord, Study

__all__ = [
    "Diagnostics",
    "Reliability",
    "agreement_matrix",
    "chance_jaccard",
    "chance_p_value",
    "churn",
    "churn_curve",
    "diagnose",
    "jaccard",
    "kept_set",
    "mean_curve",
    "rank_trajectory",
    "spearman",
    "spearman_matrix",
    "triplet_rows",
]

Row = tuple[str, str]
Triplet = tuple[str, int]
Curve = list[tuple[int, float]]
"""(optimizer step, value) points."""


# ---------------------------------------------------------------- measures on kept sets and score vectors
def kept_set(masks: dict[str, Sequence[bool]]) -> tuple[frozenset[Triplet], frozenset[Triplet]]:
    """(every triplet, the kept triplets) of a matrix → mask mapping."""
    every = frozenset((name, i) for name, mask in masks.items() for i in range(len(mask)))
    kept = frozenset((name, i) for name, mask in masks.items() for i, keep in enumerate(mask) if keep)
    return every, kept


def jaccard(first: frozenset, second: frozenset) -> float:
    """J(A, B) = |A ∩ B| / |A ∪ B|; 1.0 when both sets are empty."""
    union = len(first | second)
    return len(first & second) / union if union else 1.0


def chance_jaccard(total: int, first: int, second: int) -> float:
    """E[J] of two independent uniformly random subsets of sizes ``first`` (k₁) and ``second`` (k₂) out of
    ``total`` (N): Σ_i h(i) · i / (k₁ + k₂ − i), h(i) = C(k₁, i) C(N − k₁, k₂ − i) / C(N, k₂) (hypergeometric).

    Example: N = 4, k₁ = k₂ = 2: h = (1/6, 4/6, 1/6) for i = 0, 1, 2, so E[J] = 4/6 · 1/3 + 1/6 · 1 = 7/18.
    """
    if first + second == 0:
        return 1.0
    law = hypergeom(total, first, second)
    low, high = max(0, first + second - total), min(first, second)
    return float(sum(law.pmf(i) * i / (first + second - i) for i in range(low, high + 1)))


PERMUTATIONS = 10_000
"""Draws of the permutation test of reliability against chance (three or more seeds)."""
PERMUTATION_SEED = 0
"""Seed of that test's generator, so a report is reproducible."""
_CHUNK = 1_000


def chance_p_value(
    triplets: frozenset[Triplet],
    kept: Sequence[frozenset[Triplet]],
    draws: int = PERMUTATIONS,
    seed: int = PERMUTATION_SEED,
) -> tuple[float, str]:
    """(p, how it was computed) of the mean Jaccard over the seed pairs of ``kept`` (each seed's kept set, every one
    a subset of ``triplets``) against H0: independent uniformly random kept sets of the same sizes.

    Two seeds: exact, p = P(|A ∩ B| ≥ i_obs) = hypergeom.sf(i_obs − 1, N, k₁, k₂), since J increases with the
    intersection. Three or more: the seeded permutation test of the module docstring,
    p = (1 + #{draws ≥ observed}) / (1 + draws).

    Example: N = 4, k₁ = k₂ = 2, identical sets: p = P(I = 2) = 1/6."""
    if len(kept) < 2:
        raise ValueError(f"the test against chance needs kept sets of at least 2 seeds, got {len(kept)}.")
    if stray := [sorted(k - triplets)[:3] for k in kept if not k <= triplets]:
        raise ValueError(f"kept triplets outside the triplets tested: {stray[0]}; give every seed's own triplets.")
    if len(kept) == 2:
        first, second = kept
        shared = len(first & second)
        return float(hypergeom.sf(shared - 1, len(triplets), len(first), len(second))), "exact (hypergeometric)"
    order = sorted(triplets)
    masks = np.array([[t in k for t in order] for k in kept], dtype=bool)
    sizes = masks.sum(axis=1)
    observed = _mean_pair_jaccard(masks[None])[0]
    generator = np.random.default_rng(seed)
    at_least = 0
    for start in range(0, draws, _CHUNK):
        count = min(_CHUNK, draws - start)
        drawn = np.empty((count, len(kept), len(order)), dtype=bool)
        drawn[:, 0] = masks[0]
        for index in range(1, len(kept)):  # a uniformly random subset of the seed's size: the k smallest of N keys
            keys, size = generator.random((count, len(order))), sizes[index]
            threshold = np.partition(keys, size - 1, axis=1)[:, size - 1 : size] if size else -1.0
            drawn[:, index] = keys <= threshold
        at_least += int(np.sum(_mean_pair_jaccard(drawn) >= observed - 1e-12))
    return (1 + at_least) / (1 + draws), f"permutation test, {draws} draws"


def _mean_pair_jaccard(masks: np.ndarray) -> np.ndarray:
    """Mean J over seed pairs of every draw of ``masks`` (draws × seeds × triplets, boolean)."""
    values = []
    for a, b in itertools.combinations(range(masks.shape[1]), 2):
        shared = np.sum(masks[:, a] & masks[:, b], axis=1)
        union = np.sum(masks[:, a] | masks[:, b], axis=1)
        values.append(np.where(union > 0, shared / np.maximum(union, 1), 1.0))
    return np.mean(values, axis=0)


def churn_curve(matrices: list[tuple[str, int]], allocations: list[dict[str, Any]]) -> Curve:
    """(step, churn_t) for every allocation after the first, from ``read_allocations``' header and records."""
    kept = [(record["step"], kept_set(split_kept(matrices, record["kept"]))[1]) for record in allocations]
    curve = []
    for (_, previous), (step, current) in itertools.pairwise(kept):
        if (value := churn(previous, current)) is not None:
            curve.append((step, value))
    return curve


def rank_trajectory(matrices: list[tuple[str, int]], allocations: list[dict[str, Any]]) -> dict[str, Curve]:
    """Module type → (step, mean kept rank over the matrices of that type): step 0 holds the initial ranks, then one
    point per allocation. Matrices of no known type are ``other``."""
    kinds: dict[str, list[str]] = {}
    for name, _ in matrices:
        kinds.setdefault(module_type(name) or "other", []).append(name)
    initial = dict(matrices)
    trajectory = {kind: [(0, statistics.fmean(initial[n] for n in names))] for kind, names in kinds.items()}
    for record in allocations:
        masks = split_kept(matrices, record["kept"])
        for kind, names in kinds.items():
            trajectory[kind].append((int(record["step"]), statistics.fmean(sum(masks[n]) for n in names)))
    return {kind: trajectory[kind] for kind in ordered_types(set(trajectory))}


def spearman(first: dict[str, Sequence[float]], second: dict[str, Sequence[float]]) -> float | None:
    """Spearman ρ (``scipy.stats.spearmanr``, ties at mean ranks) between two runs' triplet scores, paired by
    (matrix, index) over the matrices both have; None when they share fewer than 2 triplets, differ in a matrix's
    rank, or one side is constant."""
    shared = sorted(set(first) & set(second))
    if any(len(first[name]) != len(second[name]) for name in shared):
        return None
    a = [v for name in shared for v in first[name]]
    b = [v for name in shared for v in second[name]]
    if len(a) < 2 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    rho = float(spearmanr(a, b).statistic)
    return None if math.isnan(rho) else rho


def mean_curve(curves: Sequence[Curve]) -> Curve:
    """The mean over ``curves`` at every step any of them has (each step over the curves that have it)."""
    by_step: dict[int, list[float]] = {}
    for curve in curves:
        for step, value in curve:
            by_step.setdefault(step, []).append(value)
    return [(step, statistics.fmean(values)) for step, values in sorted(by_step.items())]


# ---------------------------------------------------------------- per run
class _Files:
    """Each run's files, read once per report."""

    def __init__(self) -> None:
        self._final: dict[Path, tuple[frozenset[Triplet], frozenset[Triplet]] | None] = {}
        self._scores: dict[Path, dict[str, list[float]] | None] = {}

    def final(self, record: RunRecord) -> tuple[frozenset[Triplet], frozenset[Triplet]] | None:
        """(all triplets, kept triplets) of the run's final pattern; None for a run that chose none (SVD-LoRA keeps
        every triplet at a fixed rank: it has triplets but no allocation)."""
        if record.method == "svd_lora":
            return None
        if record.folder not in self._final:
            pattern = read_rank_pattern(record.folder)
            masks = None if pattern is None else {name: entry["mask"] for name, entry in pattern.items()}
            self._final[record.folder] = None if masks is None else kept_set(masks)
        return self._final[record.folder]

    def scores(self, record: RunRecord) -> dict[str, list[float]] | None:
        if record.folder not in self._scores:
            self._scores[record.folder] = read_triplet_scores(record.folder)
        return self._scores[record.folder]

    def agreement(self, first: RunRecord, second: RunRecord) -> tuple[float, float] | None:
        """(J, chance E[J]) of two runs' final kept sets; None unless both have one over the same triplets."""
        a, b = self.final(first), self.final(second)
        if a is None or b is None or a[0] != b[0]:
            return None
        return jaccard(a[1], b[1]), chance_jaccard(len(a[0]), len(a[1]), len(b[1]))

    def jaccard(self, first: RunRecord, second: RunRecord) -> float | None:
        return None if (pair := self.agreement(first, second)) is None else pair[0]

    def spearman(self, first: RunRecord, second: RunRecord) -> float | None:
        a, b = self.scores(first), self.scores(second)
        return None if a is None or b is None else spearman(a, b)


# ---------------------------------------------------------------- per study and task
def _runs(study: Study, task: str) -> dict[Row, dict[int, RunRecord]]:
    """Row → seed → run, for the runs on ``task`` that have triplets (LoRA baselines have none)."""
    runs: dict[Row, dict[int, RunRecord]] = {}
    for record in study.records:
        if record.task == task and record.method != "lora":
            runs.setdefault(record.row, {})[record.seed] = record
    return runs


def triplet_rows(study: Study, task: str) -> list[Row]:
    """The study's rows with at least one run with triplets on ``task``, in study order."""
    runs = _runs(study, task)
    return [row for row in study.rows if row in runs]


Pairwise = tuple[list[Row], list[list[float | None]], list[list[int]]]


def _pairwise(study: Study, task: str, measure: Callable[[RunRecord, RunRecord], float | None]) -> Pairwise:
    """(rows, mean matrix, count matrix) of ``measure``: off the diagonal between two rows on each seed both ran,
    on the diagonal between every pair of seeds of the row; None where no pair gives a value."""
    runs, rows = _runs(study, task), triplet_rows(study, task)
    means: list[list[float | None]] = []
    counts: list[list[int]] = []
    for a in rows:
        mean_line, count_line = [], []
        for b in rows:
            if a == b:
                pairs = [(runs[a][s], runs[a][t]) for s, t in itertools.combinations(sorted(runs[a]), 2)]
            else:
                pairs = [(runs[a][s], runs[b][s]) for s in sorted(set(runs[a]) & set(runs[b]))]
            values = [v for first, second in pairs if (v := measure(first, second)) is not None]
            mean_line.append(statistics.fmean(values) if values else None)
            count_line.append(len(values))
        means.append(mean_line)
        counts.append(count_line)
    return rows, means, counts


def agreement_matrix(study: Study, task: str) -> Pairwise:
    """Jaccard agreement of the final kept sets: off the diagonal between scores on the same seed (mean over the
    seeds both ran), on the diagonal within a score across seeds (mean over seed pairs; None with fewer than 2)."""
    return _pairwise(study, task, _Files().jaccard)


def spearman_matrix(study: Study, task: str) -> Pairwise:
    """Spearman ρ of the final triplet scores, arranged as :func:`agreement_matrix`."""
    return _pairwise(study, task, _Files().spearman)


@dataclass(frozen=True)
class Reliability:
    """One row's agreement with itself across seeds, and its churn."""

    row: Row
    jaccard: float | None
    """Mean J over seed pairs."""
    chance: float | None
    """Mean chance-level E[J] over the same pairs."""
    pairs: int
    spearman: float | None
    """Mean ρ of the triplet scores over seed pairs."""
    spearman_pairs: int
    churn: float | None
    """Mean churn over the allocations after the first, then over seeds."""
    p_value: float | None = None
    """One-sided p of the mean J against chance (:func:`chance_p_value`); None with fewer than 2 seeds or when the
    seeds' triplets differ."""
    test: str | None = None
    """How ``p_value`` was computed."""

    @property
    def above_chance(self) -> bool:
        """True only where the test against chance rejects at 5%."""
        return self.p_value is not None and self.p_value < 0.05


@dataclass(frozen=True)
class Diagnostics:
    task: str
    reliability: list[Reliability]
    agreement: Pairwise
    spearman: Pairwise
    churn: dict[Row, Curve]
    """Row → mean churn over seeds per allocation step."""
    trajectories: dict[Row, dict[str, Curve]]
    """Row → module type → mean kept rank over seeds per step."""


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def diagnose(study: Study, task: str) -> Diagnostics:
    """Every diagnostic of ``task`` (rows without triplets left out)."""
    runs, rows, files = _runs(study, task), triplet_rows(study, task), _Files()
    reliability, churns, trajectories = [], {}, {}
    for row in rows:
        seed_pairs = [(runs[row][s], runs[row][t]) for s, t in itertools.combinations(sorted(runs[row]), 2)]
        pairs = [p for first, second in seed_pairs if (p := files.agreement(first, second)) is not None]
        rhos = [r for first, second in seed_pairs if (r := files.spearman(first, second)) is not None]
        curves, per_type = [], {}
        for seed in sorted(runs[row]):
            matrices, allocations = read_allocations(runs[row][seed].folder)
            if allocations:
                curves.append(churn_curve(matrices, allocations))
                for kind, curve in rank_trajectory(matrices, allocations).items():
                    per_type.setdefault(kind, []).append(curve)
        per_seed_churn = [statistics.fmean(v for _, v in curve) for curve in curves if curve]
        finals = [final for seed in sorted(runs[row]) if (final := files.final(runs[row][seed])) is not None]
        tested = (None, None)  # (p, test)
        if len(finals) >= 2 and len({triplets for triplets, _ in finals}) == 1:
            tested = chance_p_value(finals[0][0], [kept for _, kept in finals])
        jaccard_mean, chance_mean = _mean([j for j, _ in pairs]), _mean([c for _, c in pairs])
        spearman_mean, churn_mean = _mean(rhos), _mean(per_seed_churn)
        reliability.append(
            Reliability(row, jaccard_mean, chance_mean, len(pairs), spearman_mean, len(rhos), churn_mean, *tested)
        )
        if any(curves):
            churns[row] = mean_curve(curves)
        if per_type:
            trajectories[row] = {kind: mean_curve(curves) for kind, curves in per_type.items()}
    agreement, rho = _pairwise(study, task, files.jaccard), _pairwise(study, task, files.spearman)
    return Diagnostics(task, reliability, agreement, rho, churns, trajectories)
