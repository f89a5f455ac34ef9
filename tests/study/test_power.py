"""Claims with their power: the interval by hand, the exact power against its level, the textbook MDD
approximation and a Monte Carlo simulation of paired t-tests, seeds needed against G*Power's table value, the n/a
cases, the sentences, and the report on hand-made run folders."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from scipy.stats import t as student
from scipy.stats import ttest_rel

from adalora_scores.study.power import (
    SEEDS_CAP,
    claim,
    claim_sentence,
    detectable_difference,
    mean_interval,
    paired_power,
    seeds_needed,
)
from adalora_scores.study.report import build_report
from adalora_scores.study.results import holm

T_975_2 = 4.302652729749462
"""t_{0.975, 2}, as in printed t tables (4.303)."""


def test_interval_by_hand():
    # d = (1, 2, 0.5): mean 7/6, s_d² = ((1/6)² + (5/6)² + (2/3)²) / 2 = 7/12, half width t_{0.975,2} · s_d / √3
    assert student.ppf(0.975, 2) == pytest.approx(4.303, abs=5e-4)
    half = T_975_2 * math.sqrt(7 / 12) / math.sqrt(3)
    low, high = mean_interval([1.0, 2.0, 0.5])
    assert low == pytest.approx(7 / 6 - half) and high == pytest.approx(7 / 6 + half)
    assert high - low == pytest.approx(2 * 1.8973, abs=1e-4)
    assert mean_interval([1.0]) is None


def test_power_is_the_level_at_no_difference_and_grows_with_difference_and_seeds():
    for n in (2, 3, 10, 200):
        assert paired_power(0.0, 1.3, n) == pytest.approx(0.05, abs=1e-12)
    assert paired_power(0.5, 1.0, 10) < paired_power(1.0, 1.0, 10) < paired_power(1.0, 1.0, 20)
    assert paired_power(-1.0, 1.0, 10) == pytest.approx(paired_power(1.0, 1.0, 10))  # two-sided: symmetric
    with pytest.raises(ValueError, match="n >= 2 seeds and a paired std > 0"):
        paired_power(1.0, 1.0, 1)
    with pytest.raises(ValueError, match="paired std > 0"):
        paired_power(1.0, 0.0, 5)


@pytest.mark.parametrize("n", [50, 200, 1000])
def test_minimum_detectable_difference_meets_the_textbook_approximation_for_many_seeds(n):
    # MDD ≈ (t_{1−α/2, n−1} + t_{1−β, n−1}) · s_d / √n; the exact value is within 0.05% of it from n = 50 on
    std = 2.5
    approximate = (student.ppf(0.975, n - 1) + student.ppf(0.8, n - 1)) * std / math.sqrt(n)
    exact = detectable_difference(std, n)
    assert exact == pytest.approx(approximate, rel=5e-4)
    assert paired_power(exact, std, n) == pytest.approx(0.8, abs=1e-9)


def test_minimum_detectable_difference_has_80_percent_power_in_simulated_paired_t_tests():
    """20,000 seeded simulated studies of n = 4 seeds whose true paired difference is the MDD: the two-sided paired
    t-test (scipy.stats.ttest_rel, independent of the noncentral t) rejects in 80% of them (± 4 standard errors)."""
    n, std, studies = 4, 1.7, 20_000
    difference = detectable_difference(std, n)
    assert 2.0 < difference / std * math.sqrt(n) < 6.0  # a real, small-sample case: far from the normal limit
    generator = np.random.default_rng(0)
    reference = generator.normal(70.0, 3.0, (studies, n))  # per-seed level shared by both rows (paired)
    ours = reference + difference + generator.normal(0.0, std, (studies, n))
    rejected = np.mean(ttest_rel(ours, reference, axis=1).pvalue < 0.05)
    assert rejected == pytest.approx(0.8, abs=4 * math.sqrt(0.8 * 0.2 / studies))


def test_seeds_needed_against_g_power_and_by_definition():
    # G*Power (one-sample / paired t-test, d = 0.5, α = 0.05 two-sided, power 0.8): n = 34, actual power 0.8078
    assert seeds_needed(0.5, 1.0) == 34
    assert paired_power(0.5, 1.0, 34) == pytest.approx(0.8078, abs=5e-5)
    assert paired_power(0.5, 1.0, 33) < 0.8
    # the smallest n ≥ 2 with power ≥ 0.8, checked one n at a time
    needed = seeds_needed(0.5, 1.37)
    assert paired_power(0.5, 1.37, needed) >= 0.8 > paired_power(0.5, 1.37, needed - 1)
    assert seeds_needed(10.0, 0.1) == 2  # a huge effect: the least seeds a paired test has
    assert seeds_needed(0.01, 1.0) is None  # beyond the cap of SEEDS_CAP seeds
    with pytest.raises(ValueError, match="must be > 0"):
        seeds_needed(0.0, 1.0)


def test_claims_where_power_is_not_available():
    assert claim([]).why_not == "no seed ran both rows"
    one = claim([2.0])
    assert one.mean_difference == 2.0 and one.detectable is None and "1 paired seed" in one.why_not
    flat = claim([1.0, 1.0, 1.0 + 1e-13])  # equal up to rounding: no spread
    assert flat.std_difference == 0.0 and flat.detectable is None and "s_d = 0" in flat.why_not
    sentence = claim_sentence("`fisher`", "sensitivity", "MRPC Acc", flat, None)
    assert sentence.startswith("`fisher` vs `sensitivity` on MRPC Acc: Δ = +1.00 over 3 seeds; power n/a (")


def test_sentences_detected_and_not():
    not_seen = claim([1.0, 2.0, 0.5])
    sentence = claim_sentence("`fisher`", "sensitivity", "MRPC Acc", not_seen, 0.41)
    mdd, needed = detectable_difference(math.sqrt(7 / 12), 3), seeds_needed(0.5, math.sqrt(7 / 12))
    assert sentence == (
        f"`fisher` vs `sensitivity` on MRPC Acc: not detected (Δ = +1.17 [{not_seen.low:.2f}, {not_seen.high:.2f}], "
        f"p_Holm 0.41); with 3 seeds only a difference of {mdd:.2f} points or more would have been seen (80% power); "
        f"0.5 points would need {needed} seeds."
    )
    seen = claim([-3.0, -3.2, -2.9])
    assert claim_sentence("`gsnr`", "sensitivity", "STS-B Corr", seen, 0.004).endswith(
        f"detected: Δ = -3.03 [{seen.low:.2f}, {seen.high:.2f}] (worse), p_Holm 0.004, 3 seeds."
    )
    assert "(better)" in claim_sentence("`gsnr`", "sensitivity", "mse", seen, 0.004, higher_is_better=False)
    wide = claim([0.0, 40.0])  # s_d ≈ 28: 0.5 points would need more seeds than the search goes
    assert wide.seeds_for_target is None
    assert f"0.5 points would need more than {SEEDS_CAP} seeds." in claim_sentence("`a`", "b", "c", wide, 0.5)


# ---------------------------------------------------------------- the report on hand-made run folders
ACCURACY = {  # score → seed → MRPC dev accuracy (Table 1's MRPC column)
    "sensitivity": {1: 80.0, 2: 82.0, 3: 84.0},
    "fisher": {1: 81.0, 2: 84.0, 3: 84.5},  # differences 1, 2, 0.5: not detected
    "taylor": {1: 90.0, 2: 92.5, 3: 93.75},  # differences 10, 10.5, 9.75: detected
    "movement": {1: 81.0, 2: 83.0, 3: 85.0},  # differences 1, 1, 1: no spread
    "gsnr": {1: 79.0},  # one paired seed
}
SETTINGS = {"orth_reg_weight": 0.1, "lora_alpha": 32.0, "learning_rate": 0.001}


def _power_study(root) -> None:
    for score, seeds in ACCURACY.items():
        for seed, accuracy in seeds.items():
            folder = root / f"mrpc__{score}__seed{seed}"
            folder.mkdir(parents=True)
            settings = dict(SETTINGS, learning_rate=0.002 if (score, seed) == ("taylor", 3) else 0.001)
            config = {"task": "mrpc", "score": score, "seed": seed, "method": "adalora", **settings}
            (folder / "config.yaml").write_text(yaml.safe_dump(config))
            metrics = {"eval": {"dev": {"accuracy": accuracy}}}
            (folder / "metrics.json").write_text(json.dumps(metrics))
    folder = root / "mrpc__lora_r8__seed1"
    folder.mkdir()
    config = {"task": "mrpc", "seed": 1, "method": "lora", "target_r": 8, "score": "sensitivity", **SETTINGS}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "metrics.json").write_text(json.dumps({"eval": {"dev": {"accuracy": 85.0}}}))


def test_report_states_each_claim_with_its_power(tmp_path):
    _power_study(tmp_path)
    build_report(tmp_path, plot=False)
    tests = json.loads((tmp_path / "report.json").read_text())["table1"]["significance"]
    by = {(t["score"], t["column"]): t for t in tests}
    reference = ACCURACY["sensitivity"]
    # Holm over the comparisons of the table that have a p: fisher's and taylor's (the others have n/a)
    p_values = {
        s: ttest_rel(list(ACCURACY[s].values()), list(reference.values())).pvalue for s in ("fisher", "taylor")
    }
    adjusted = dict(zip(["fisher", "taylor"], holm([p_values["fisher"], p_values["taylor"]]), strict=True))
    assert adjusted["taylor"] == pytest.approx(2 * p_values["taylor"]) and adjusted["fisher"] == p_values["fisher"]
    for score in ("fisher", "taylor"):
        row = by[(score, "MRPC Acc")]
        differences = [ACCURACY[score][s] - reference[s] for s in (1, 2, 3)]
        mean, spread = sum(differences) / 3, float(np.std(differences, ddof=1))
        half = T_975_2 * spread / math.sqrt(3)
        assert row["mean_difference"] == pytest.approx(mean) and row["std_difference"] == pytest.approx(spread)
        assert row["low"] == pytest.approx(mean - half) and row["high"] == pytest.approx(mean + half)
        assert row["p"] == pytest.approx(p_values[score]) and row["p_holm"] == pytest.approx(adjusted[score])
        assert row["detectable_difference"] == pytest.approx(detectable_difference(spread, 3))
        assert row["seeds_for_target"] == seeds_needed(0.5, spread)
    assert not by[("fisher", "MRPC Acc")]["detected"] and by[("taylor", "MRPC Acc")]["detected"]
    fisher = by[("fisher", "MRPC Acc")]
    assert fisher["sentence"] == (
        f"`fisher` vs `sensitivity` on MRPC Acc: not detected (Δ = +1.17 [{fisher['low']:.2f}, {fisher['high']:.2f}], "
        f"p_Holm {adjusted['fisher']:.3g}); with 3 seeds only a difference of "
        f"{fisher['detectable_difference']:.2f} points or more would have been seen (80% power); 0.5 points would "
        f"need {fisher['seeds_for_target']} seeds."
    )
    taylor = by[("taylor", "MRPC Acc")]
    assert taylor["sentence"].endswith(
        f"detected: Δ = +10.08 [{taylor['low']:.2f}, {taylor['high']:.2f}] (better), p_Holm "
        f"{adjusted['taylor']:.3g}, 3 seeds."
    )
    assert by[("movement", "MRPC Acc")]["detectable_difference"] is None
    assert "s_d = 0" in by[("movement", "MRPC Acc")]["power_not_available"]
    assert by[("gsnr", "MRPC Acc")]["sentence"] == (
        "`gsnr` vs `sensitivity` on MRPC Acc: Δ = -1.00 over 1 seed; power n/a (1 paired seed; the test and its "
        "power need 2)."
    )
    report = (tmp_path / "report.md").read_text()
    for row in tests:
        assert f"- {row['sentence']}" in report
    line = next(x for x in report.splitlines() if x.startswith("| `fisher` | MRPC Acc |"))
    assert f"[{fisher['low']:+.2f}, {fisher['high']:+.2f}]" in line
    assert line.endswith(f"| {fisher['detectable_difference']:.2f} | {fisher['seeds_for_target']} |")


def test_report_shows_the_settings_each_row_ran_with(tmp_path):
    _power_study(tmp_path)
    build_report(tmp_path, plot=False)
    report = (tmp_path / "report.md").read_text()
    section = report.split("### Settings each row ran with")[1].split("###")[0]
    rows = {
        line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
        for line in section.splitlines()
        if line.startswith("| `")
    }
    assert rows["`fisher`"] == ["0.1", "32", "2", "0.001"]  # c = α / init_r = 32 / 16
    assert rows["`taylor`"] == ["0.1", "32", "2", "0.001 (mrpc seeds 1, 2) · 0.002 (mrpc seed 3)"]  # seeds disagree
    assert rows["`lora_r8`"] == ["–", "32", "4", "0.001"]  # LoRA has no regulariser; c = α / r = 32 / 8
    settings = {(r["score"]): r for r in json.loads((tmp_path / "report.json").read_text())["table1"]["settings"]}
    assert settings["taylor"]["learning_rate"] == [
        {"value": 0.001, "runs": [["mrpc", 1], ["mrpc", 2]]},
        {"value": 0.002, "runs": [["mrpc", 3]]},
    ]
    assert settings["lora_r8"]["orth_reg_weight"] == []
