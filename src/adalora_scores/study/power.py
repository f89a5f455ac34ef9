"""Claims with their power: what a paired comparison over n seeds could have seen.

For one row against the reference row in one column, with the paired differences d_s = ours_s − reference_s over
the n seeds both ran (mean d̄, sample std s_d, ddof 1):

* **95% interval** of the mean difference (t over seeds): d̄ ± t_{0.975, n−1} · s_d / √n.
* **Power** of the two-sided paired t-test at level α for a true mean difference δ, computed exactly with the
  noncentral t distribution (as statsmodels' ``TTestPower`` does):
  power = P(T > t_crit) + P(T < −t_crit), T ~ t(df = n − 1, nc = δ √n / s_d), t_crit = t_{1−α/2, n−1}.
* **Minimum detectable difference** (MDD): the δ > 0 at which that power is 80% (``scipy.optimize.brentq``). Its
  textbook approximation is (t_{1−α/2, n−1} + t_{1−β, n−1}) · s_d / √n (e.g. Cohen, *Statistical Power Analysis*,
  1988, ch. 2), close to the exact value for large n.
* **Seeds needed** for a difference δ: the smallest n ≥ 2 whose power reaches 80%, taking s_d as observed; searched
  up to :data:`SEEDS_CAP`, beyond which it is reported as "more than" the cap.

The observed s_d stands in for the true one, so MDD and seeds needed are estimates, as rough as s_d over few seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy.optimize import brentq
from scipy.stats import nct
from scipy.stats import t as student

__all__ = [
    "ALPHA",
    "POWER",
    "SEEDS_CAP",
    "TARGET_DIFFERENCE",
    "Claim",
    "claim",
    "claim_sentence",
    "detectable_difference",
    "mean_interval",
    "paired_power",
    "seeds_needed",
]

ALPHA = 0.05
"""Two-sided level of the paired t-test."""
POWER = 0.8
"""The power at which a difference counts as detectable."""
TARGET_DIFFERENCE = 0.5
"""The difference (in the metric's points) whose seeds needed the report states."""
SEEDS_CAP = 1000
"""The largest number of seeds :func:`seeds_needed` searches."""


def mean_interval(differences: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """(low, high) = d̄ ∓ t_{(1+c)/2, n−1} · s_d / √n of the paired differences; None with fewer than 2."""
    n = len(differences)
    if n < 2:
        return None
    mean, spread = statistics.fmean(differences), statistics.stdev(differences)
    half = float(student.ppf((1 + confidence) / 2, n - 1)) * spread / math.sqrt(n)
    return mean - half, mean + half


def paired_power(difference: float, std: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired t-test over ``n`` seeds for a true mean difference ``difference`` when the
    paired differences have std ``std``: P(T > t_crit) + P(T < −t_crit), T noncentral t with df = n − 1 and
    nc = δ √n / s_d, t_crit = t_{1−α/2, n−1}."""
    if n < 2 or not std > 0:
        raise ValueError(f"power needs n >= 2 seeds and a paired std > 0, got n = {n}, std = {std}.")
    df = n - 1
    critical = float(student.ppf(1 - alpha / 2, df))
    noncentrality = difference * math.sqrt(n) / std
    # P(T < −t_crit | nc) = P(T > t_crit | −nc): scipy's nct.cdf far in the lower tail can return NaN
    return float(nct.sf(critical, df, noncentrality) + nct.sf(critical, df, -noncentrality))


def detectable_difference(std: float, n: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The minimum detectable difference: the δ > 0 whose :func:`paired_power` is ``power`` (brentq on
    power(δ) − power, bracketed by doubling from the approximation (t_{1−α/2, n−1} + t_{power, n−1}) · s_d / √n)."""
    if not alpha < power < 1:
        raise ValueError(f"power must lie between alpha ({alpha}) and 1, got {power}.")
    paired_power(0.0, std, n, alpha)  # validates n and std
    df = n - 1
    approximate = (float(student.ppf(1 - alpha / 2, df)) + float(student.ppf(power, df))) * std / math.sqrt(n)
    high = approximate
    while paired_power(high, std, n, alpha) < power:
        high *= 2
    return float(brentq(lambda delta: paired_power(delta, std, n, alpha) - power, 0.0, high, xtol=1e-10))


def seeds_needed(
    difference: float, std: float, power: float = POWER, alpha: float = ALPHA, cap: int = SEEDS_CAP
) -> int | None:
    """The smallest n ≥ 2 with :func:`paired_power` (difference, std, n) ≥ ``power``; None when even ``cap`` seeds
    fall short. Power grows with n, so the search bisects between 2 and ``cap``."""
    if not difference > 0:
        raise ValueError(f"the difference to detect must be > 0, got {difference}.")
    if paired_power(difference, std, cap, alpha) < power:
        return None
    low, high = 1, cap  # power(low) < power (n = 1 has none), power(high) >= power
    while high - low > 1:
        middle = (low + high) // 2
        if middle >= 2 and paired_power(difference, std, middle, alpha) >= power:
            high = middle
        else:
            low = middle
    return high


@dataclass(frozen=True)
class Claim:
    """What one paired comparison shows, and what it could have shown."""

    n: int
    mean_difference: float | None
    low: float | None
    """95% interval of the mean difference (None with fewer than 2 seeds)."""
    high: float | None
    std_difference: float | None
    """s_d, the sample std of the paired differences (None with fewer than 2 seeds)."""
    detectable: float | None
    """The minimum detectable difference at 80% power (None when n < 2 or s_d = 0)."""
    seeds_for_target: int | None
    """Seeds to detect :data:`TARGET_DIFFERENCE` at 80% power (None when n < 2, s_d = 0 or beyond the cap)."""
    why_not: str | None
    """Why the power numbers are n/a, when they are."""


def claim(differences: Sequence[float], target: float = TARGET_DIFFERENCE) -> Claim:
    """The interval, MDD and seeds needed of the paired ``differences`` (ours − reference, one per seed).

    A spread within float rounding of zero counts as none, as in :func:`adalora_scores.study.results.paired_test`."""
    n = len(differences)
    if n == 0:
        return Claim(0, None, None, None, None, None, None, "no seed ran both rows")
    mean = statistics.fmean(differences)
    if n < 2:
        return Claim(n, mean, None, None, None, None, None, "1 paired seed; the test and its power need 2")
    spread = statistics.stdev(differences)
    low, high = mean_interval(differences) or (None, None)
    if max(abs(d - mean) for d in differences) <= 1e-9 * max(1.0, abs(mean)):
        reason = "the paired differences are equal on every seed (s_d = 0), so the t-test and its power are undefined"
        return Claim(n, mean, mean, mean, 0.0, None, None, reason)
    return Claim(n, mean, low, high, spread, detectable_difference(spread, n), seeds_needed(target, spread), None)


def _number(value: float | None, form: str) -> str:
    return "n/a" if value is None else format(value, form)


def claim_sentence(
    row: str, reference: str, column: str, result: Claim, p_holm: float | None, higher_is_better: bool = True
) -> str:
    """One sentence: what the comparison of ``row`` with ``reference`` on ``column`` showed and what it could have.

    "detected" where p_Holm < 0.05; otherwise the MDD with these seeds and the seeds :data:`TARGET_DIFFERENCE` would
    need; n/a (and why) where the paired std or the seeds do not allow a test."""
    head = f"{row} vs `{reference}` on {column}: "
    seeds = f"{result.n} seed" + ("s" if result.n != 1 else "")
    if result.why_not is not None:
        observed = "" if result.mean_difference is None else f"Δ = {result.mean_difference:+.2f} over {seeds}; "
        return head + observed + f"power n/a ({result.why_not})."
    interval = f"Δ = {result.mean_difference:+.2f} [{_number(result.low, '.2f')}, {_number(result.high, '.2f')}]"
    if p_holm is not None and p_holm < 0.05:
        direction = "better" if ((result.mean_difference or 0.0) > 0) == higher_is_better else "worse"
        return head + f"detected: {interval} ({direction}), p_Holm {p_holm:.3g}, {seeds}."
    needed = f"more than {SEEDS_CAP} seeds" if result.seeds_for_target is None else f"{result.seeds_for_target} seeds"
    return (
        head + f"not detected ({interval}, p_Holm {_number(p_holm, '.3g')}); with {seeds} only a difference of "
        f"{_number(result.detectable, '.2f')} points or more would have been seen ({POWER:.0%} power); "
        f"{TARGET_DIFFERENCE:g} points would need {needed}."
    )
