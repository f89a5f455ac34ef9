"""Score diagnostics on hand-made run folders: Jaccard within and between scores against hand-computed fractions,
the chance level against enumeration, churn and rank trajectories from allocations.jsonl, Spearman by hand and
against scipy, LoRA rows left out, and the report's section."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
import yaml
from scipy.stats import hypergeom, spearmanr

from adalora_scores.runs.files import split_kept
from adalora_scores.study.diagnostics import (
    PERMUTATIONS,
    chance_jaccard,
    chance_p_value,
    churn,
    churn_curve,
    diagnose,
    jaccard,
    mean_curve,
    rank_trajectory,
    spearman,
)
from adalora_scores.study.report import build_report
from adalora_scores.study.results import collect

Q = "bert.encoder.layer.0.attention.self.query.lora_E.default"
F2 = "bert.encoder.layer.0.output.dense.lora_E.default"
MATRICES = [(Q, 3), (F2, 3)]
"""Six triplets: q0 q1 q2 (the query matrix) then f0 f1 f2 (the feed-forward output)."""


# ---------------------------------------------------------------- the measures themselves
def test_jaccard_and_its_chance_level():
    assert jaccard(frozenset("abc"), frozenset("bcd")) == 2 / 4
    assert jaccard(frozenset(), frozenset()) == 1.0
    # N = 4, k = 2: |A ∩ B| is 0, 1, 2 with probability 1/6, 4/6, 1/6 → E[J] = 4/6 · 1/3 + 1/6 · 1 = 7/18
    assert chance_jaccard(4, 2, 2) == pytest.approx(7 / 18)
    # N = 3, k₁ = 1, k₂ = 2: the single kept triplet is in the pair with probability 2/3, then J = 1/2 → 1/3
    assert chance_jaccard(3, 1, 2) == pytest.approx(1 / 3)
    # every pair of subsets of sizes 3 and 2 out of 6, enumerated
    subsets = lambda k: [frozenset(c) for c in itertools.combinations(range(6), k)]  # noqa: E731
    exact = [jaccard(a, b) for a in subsets(3) for b in subsets(2)]
    assert chance_jaccard(6, 3, 2) == pytest.approx(sum(exact) / len(exact))


def test_churn_and_rank_trajectory_by_hand():
    allocations = [
        {"step": 2, "budget": 5, "kept": "111110"},  # K₂ = {q0 q1 q2 f0 f1}
        {"step": 4, "budget": 4, "kept": "110101"},  # K₄ = {q0 q1 f0 f2}: f2 is new → 1/4
        {"step": 6, "budget": 3, "kept": "100101"},
    ]  # K₆ = {q0 f0 f2} ⊂ K₄ → 0
    assert churn_curve(MATRICES, allocations) == [(4, 0.25), (6, 0.0)]
    assert churn(frozenset("ab"), frozenset()) is None
    # mean kept rank per matrix of each type, step 0 = the initial ranks
    assert rank_trajectory(MATRICES, allocations) == {
        "q": [(0, 3), (2, 3), (4, 2), (6, 1)],
        "f2": [(0, 3), (2, 2), (4, 2), (6, 2)],
    }
    assert mean_curve([[(4, 0.25), (6, 0.0)], [(4, 0.75)]]) == [(4, 0.5), (6, 0.0)]
    with pytest.raises(ValueError, match="header's matrices have 6 triplets"):
        split_kept(MATRICES, "11110")


def test_spearman_by_hand_and_against_scipy():
    # ranks (1 2 3 4) against (1 3 2 4): Σd² = 2, ρ = 1 − 6 · 2 / (4 · 15) = 0.8
    assert spearman({"m": [1.0, 2.0], "n": [3.0, 4.0]}, {"m": [1.0, 3.0], "n": [2.0, 4.0]}) == pytest.approx(0.8)
    generator = random.Random(0)
    values = [generator.random() for _ in range(20)]
    shuffled = random.Random(1).sample(values, 20)
    first = {"a": values[:12], "b": values[12:]}
    second = {"b": shuffled[12:], "a": shuffled[:12]}  # another key order: paired by matrix name, not position
    assert spearman(first, second) == pytest.approx(spearmanr(values, shuffled).statistic)
    assert spearman({"a": [1.0, 1.0]}, {"a": [1.0, 2.0]}) is None  # constant: ρ undefined
    assert spearman({"a": [1.0, 2.0]}, {"a": [1.0, 2.0, 3.0]}) is None  # ranks differ: not the same triplets


# ---------------------------------------------------------------- a study of hand-made run folders
KEPT = {  # (score, seed) → final kept triplets, as a mask string over q0 q1 q2 f0 f1 f2
    ("sensitivity", 1): "110100",  # {q0 q1 f0}
    ("sensitivity", 2): "110010",  # {q0 q1 f1}
    ("sensitivity", 3): "110001",  # {q0 q1 f2}
    ("fisher", 1): "110100",  # {q0 q1 f0}
    ("fisher", 2): "001011",  # {q2 f1 f2}
}
SCORES = {  # (score, seed) → final triplet scores in the same order
    ("sensitivity", 1): [1, 2, 3, 4, 5, 6],
    ("sensitivity", 2): [1, 2, 3, 4, 5, 6],
    ("sensitivity", 3): [1, 2, 3, 4, 5, 6],
    ("fisher", 1): [1, 3, 2, 4, 5, 6],
    ("fisher", 2): [6, 5, 4, 3, 2, 1],
}
BEFORE = "111010"  # every run's kept set at step 10, {q0 q1 q2 f1}, before its final allocation at step 20


def _write(root: Path, score: str, seed: int, method: str = "adalora", kept: str | None = None) -> Path:
    """A run folder; ``kept`` (a mask string) replaces the run's final kept set from :data:`KEPT`."""
    folder = root / f"rte__{score}__seed{seed}"
    folder.mkdir(parents=True)
    config = {
        "task": "rte",
        "seed": seed,
        "method": method,
        "score": "sensitivity" if method == "lora" else score,
        "target_r": 2,
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "metrics.json").write_text(json.dumps({"main_metric": "accuracy", "eval": {"dev": {"accuracy": 70.0}}}))
    kept = "111111" if method == "lora" else kept or KEPT[(score, seed)]
    masks = split_kept(MATRICES, kept)
    pattern = {name: {"rank": sum(mask), "mask": mask} for name, mask in masks.items()}
    (folder / "rank_pattern.json").write_text(json.dumps(pattern))
    if method == "lora":
        return folder
    records = [
        {"matrices": MATRICES},
        {"step": 10, "budget": 4, "kept": BEFORE},
        {"step": 20, "budget": 3, "kept": kept},
    ]
    (folder / "allocations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    scores = SCORES.get((score, seed), [1, 2, 3, 4, 5, 6])
    (folder / "triplet_scores.json").write_text(json.dumps({"step": 20, "scores": {Q: scores[:3], F2: scores[3:]}}))
    return folder


@pytest.fixture
def study_root(tmp_path):
    for score, seed in KEPT:
        _write(tmp_path, score, seed)
    for seed in (1, 2):
        _write(tmp_path, "lora_r2", seed, method="lora")
    return tmp_path


def test_agreement_reliability_spearman_and_churn_of_a_study(study_root):
    study = collect(study_root)
    assert ("lora_r2", "") in study.rows  # the baseline is in the tables...
    diagnostics = diagnose(study, "rte")
    sensitivity, fisher = ("sensitivity", ""), ("fisher", "")
    rows, jaccards, counts = diagnostics.agreement
    assert rows == [sensitivity, fisher]  # ...but has no triplets, so no row or column here
    # within sensitivity, 3 seed pairs, each sharing {q0 q1} out of 4 → 1/2; within fisher {q0 q1 f0} vs {q2 f1 f2}
    assert jaccards[0][0] == pytest.approx(1 / 2) and counts[0][0] == 3
    assert jaccards[1][1] == 0.0 and counts[1][1] == 1
    # between them, same seed: seed 1 identical (1), seed 2 {q0 q1 f1} vs {q2 f1 f2} share {f1} of 5 → (1 + 1/5) / 2
    assert jaccards[0][1] == jaccards[1][0] == pytest.approx(0.6) and counts[0][1] == 2
    # chance for 3 of 6: h = (1, 9, 9, 1) / 20 for |A ∩ B| = 0..3 → 9/20 · 1/5 + 9/20 · 2/4 + 1/20 · 1 = 0.365
    by_row = {r.row: r for r in diagnostics.reliability}
    assert by_row[sensitivity].chance == pytest.approx(0.365) and by_row[sensitivity].pairs == 3
    # Spearman: sensitivity's seeds rank alike (1); fisher's seeds: Σd² = 68 → 1 − 6 · 68 / (6 · 35) = −33/35
    assert by_row[sensitivity].spearman == pytest.approx(1.0) and by_row[sensitivity].spearman_pairs == 3
    assert by_row[fisher].spearman == pytest.approx(-33 / 35)
    rows, rhos, counts = diagnostics.spearman
    # between them: seed 1 Σd² = 2 → 1 − 12/210 = 33/35; seed 2 reversed → −1; mean −1/35
    assert rhos[0][1] == pytest.approx((33 / 35 - 1) / 2) and counts[0][1] == 2
    assert rhos[1][1] == pytest.approx(-33 / 35)
    # churn at step 20 from K₁₀ = {q0 q1 q2 f1}: new f0 (1/3), nothing (0), f2 (1/3) for sensitivity's seeds
    assert diagnostics.churn[sensitivity] == [(20, pytest.approx(2 / 9))]
    assert diagnostics.churn[fisher] == [(20, pytest.approx(1 / 3))]  # f0 and f2 are new: 1/3 each
    assert by_row[fisher].churn == pytest.approx(1 / 3)
    assert set(diagnostics.churn) == set(diagnostics.trajectories) == {sensitivity, fisher}
    # q triplets kept at step 20: sensitivity 2 on every seed; fisher 2 and 1
    assert diagnostics.trajectories[fisher]["q"] == [(0, 3), (10, 3), (20, 1.5)]


def test_diagonal_is_blank_with_one_seed(tmp_path):
    _write(tmp_path, "sensitivity", 1)
    _write(tmp_path, "fisher", 1)
    diagnostics = diagnose(collect(tmp_path), "rte")
    _, jaccards, counts = diagnostics.agreement
    assert jaccards[0][0] is None and counts[0][0] == 0 and jaccards[0][1] == pytest.approx(1.0)
    assert diagnostics.reliability[0].jaccard is None and diagnostics.reliability[0].chance is None
    assert diagnostics.reliability[0].p_value is None and not diagnostics.reliability[0].above_chance


def test_report_has_the_diagnostics_section(study_root):
    build_report(study_root, plot=True)
    report = (study_root / "report.md").read_text()
    section = report.split("## Score diagnostics")[1]
    assert "### rte" in section and "`lora_r2`" not in section and "`lora_r2`" in report.split("## Score")[0]
    # the reliability table (first): Jaccard, chance, p against chance, pairs, Spearman, pairs, churn
    reliability = next(line for line in section.splitlines() if line.startswith("| `sensitivity`"))
    cells = [c.strip() for c in reliability.split("|")[2:9]]
    assert cells[0] == "0.50" and cells[3:] == ["3", "1.00", "3", "0.222"]
    # fisher's J = 0 is below chance (exact p = P(|A ∩ B| ≥ 0) = 1); sensitivity's 1/2 is above the chance level
    # 0.365 but not significantly so with 3 seeds (p ≈ 0.15 by the permutation test), so neither is "above chance"
    assert "measuring noise on this task: `sensitivity` (p 0.1" in section and "`fisher` (p 1)" in section
    assert "(from as few as 1 seed pair(s)" in section and "Above chance" not in section
    assert "| `fisher` | -0.03 | -0.94 |" in section  # the Spearman matrix's fisher line: −1/35, −33/35
    for kind in ("agreement", "churn", "trajectories"):
        assert (study_root / "plots" / f"{kind}_rte.png").stat().st_size > 5000 and f"plots/{kind}_rte.png" in section
    assert not list((study_root / "plots").glob("budget_*"))
    document = json.loads((study_root / "report.json").read_text())["diagnostics"]["rte"]
    assert document["agreement"]["rows"] == [["sensitivity", ""], ["fisher", ""]]
    assert document["reliability"][0]["chance"] == pytest.approx(0.365)
    assert document["spearman"]["mean"][1][1] == pytest.approx(-33 / 35)
    assert [c["score"] for c in document["churn"]] == ["sensitivity", "fisher"]


# ---------------------------------------------------------------- reliability against chance, with a test
def test_chance_p_value_of_two_seeds_is_exact():
    triplets = frozenset(range(10))
    # N = 10, k₁ = 4, k₂ = 5, 3 shared: P(I ≥ 3) = [C(4,3) C(6,2) + C(4,4) C(6,1)] / C(10,5) = (60 + 6) / 252
    p, how = chance_p_value(triplets, [frozenset({0, 1, 2, 3}), frozenset({1, 2, 3, 7, 8})])
    assert p == pytest.approx(66 / 252) and how == "exact (hypergeometric)"
    assert p == pytest.approx(hypergeom.sf(2, 10, 4, 5))
    # N = 4, k = 2, the same two triplets: P(I = 2) = 1/C(4,2) = 1/6; nothing shared: P(I ≥ 0) = 1
    assert chance_p_value(frozenset(range(4)), [frozenset({0, 1})] * 2)[0] == pytest.approx(1 / 6)
    assert chance_p_value(frozenset(range(4)), [frozenset({0, 1}), frozenset({2, 3})])[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        chance_p_value(triplets, [frozenset({0})])
    with pytest.raises(ValueError, match="outside the triplets tested"):
        chance_p_value(frozenset(range(3)), [frozenset({0}), frozenset({5})])


def test_permutation_p_value_of_three_seeds_against_enumeration():
    """Sensitivity's three kept sets of the hand-made study (3 of 6 triplets each, mean J = 1/2): the exact p by
    enumerating all 20 × 20 kept sets of seeds 2 and 3 (seed 1 fixed, which leaves the law unchanged), against the
    seeded permutation test's estimate (± 4 standard errors)."""
    triplets = frozenset(range(6))
    kept = [frozenset({0, 1, 3}), frozenset({0, 1, 4}), frozenset({0, 1, 5})]
    subsets = [frozenset(c) for c in itertools.combinations(range(6), 3)]

    def mean_jaccard(sets):
        return sum(jaccard(a, b) for a, b in itertools.combinations(sets, 2)) / 3

    observed = mean_jaccard(kept)
    assert observed == pytest.approx(1 / 2)
    hits = sum(mean_jaccard([kept[0], b, c]) >= observed - 1e-12 for b in subsets for c in subsets)
    exact = hits / 400
    p, how = chance_p_value(triplets, kept)
    assert how == f"permutation test, {PERMUTATIONS} draws"
    assert p == pytest.approx(exact, abs=4 * (exact * (1 - exact) / PERMUTATIONS) ** 0.5 + 1 / PERMUTATIONS)
    assert chance_p_value(triplets, kept) == (p, how)  # seeded: the same report twice
    # three identical kept sets: exact p = (1/20)² = 0.0025
    p_identical, _ = chance_p_value(triplets, [kept[0]] * 3)
    assert p_identical == pytest.approx(1 / 400, abs=4 * (1 / 400 / PERMUTATIONS) ** 0.5 + 1 / PERMUTATIONS)


def _reliability_study(root: Path, kept: dict[tuple[str, int], str]) -> Path:
    for (score, seed), mask in kept.items():
        _write(root, score, seed, kept=mask)
    build_report(root, plot=False)
    return root


def test_report_says_above_chance_only_where_the_test_does(tmp_path):
    # taylor keeps the same triplets on every seed (p = 1/400); movement's seeds share little (J below chance)
    kept = {
        ("taylor", 1): "110100",
        ("taylor", 2): "110100",
        ("taylor", 3): "110100",
        ("movement", 1): "111000",
        ("movement", 2): "000111",
        ("movement", 3): "100110",
    }
    root = _reliability_study(tmp_path, kept)
    section = (root / "report.md").read_text().split("## Score diagnostics")[1]
    above = next(line for line in section.splitlines() if line.startswith("Above chance"))
    assert "`taylor` (p 0.00" in above and "movement" not in above
    not_shown = next(line for line in section.splitlines() if line.startswith("Not shown to be above chance"))
    assert "`movement` (p " in not_shown and "taylor" not in not_shown
    assert "across seeds than chance" not in section  # no unconditional verdict
    reliability = {
        r["score"]: r for r in json.loads((root / "report.json").read_text())["diagnostics"]["rte"]["reliability"]
    }
    assert reliability["taylor"]["above_chance"] and reliability["taylor"]["p_value"] < 0.01
    assert not reliability["movement"]["above_chance"] and reliability["movement"]["p_value"] > 0.5
    assert reliability["movement"]["test"] == f"permutation test, {PERMUTATIONS} draws"


def test_two_identical_seeds_of_few_triplets_are_not_above_chance(tmp_path):
    """2 of 6 triplets kept identically on 2 seeds (J = 1): exact p = 1/C(6,2) = 1/15 ≈ 0.067, not below 0.05: too
    few triplets and seeds to call it above chance, however alike the seeds look."""
    root = _reliability_study(tmp_path, {("taylor", 1): "110000", ("taylor", 2): "110000"})
    section = (root / "report.md").read_text().split("## Score diagnostics")[1]
    assert "Above chance" not in section and "`taylor` (p 0.0667)" in section
    assert "(from as few as 1 seed pair(s)" in section
