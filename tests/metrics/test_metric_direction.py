"""Metric direction: the registry, and tuned selection that picks the smallest mean for a lower-is-better metric,
on hand-made run folders (written as ``tests/study/test_tuned.py`` writes them)."""

from __future__ import annotations

import json

import pytest
import yaml

from adalora_scores.cli import main
from adalora_scores.metrics.direction import LOWER_IS_BETTER, higher_is_better, register_metric_direction
from adalora_scores.study.paper import Column
from adalora_scores.study.results import collect
from adalora_scores.study.tuning import tune

# score → learning rate → seed → (selection, dev) values of the main metric
RUNS = {
    "sensitivity": {1e-3: {1: (0.50, 0.55), 2: (0.70, 0.65)}, 3e-3: {1: (0.40, 0.90), 2: (0.40, 0.80)}},
    "fisher": {1e-3: {1: (0.20, 0.30), 2: (0.30, 0.20)}, 3e-3: {1: (0.90, 0.10), 2: (0.80, 0.10)}},
}


def _folder(root, metric: str, runs=RUNS) -> None:
    manifest = {}
    for score, rates in runs.items():
        for lr, seeds in rates.items():
            for seed, (selection, dev) in seeds.items():
                name = f"classification__{score}__learning_rate={lr}__seed{seed}"
                manifest[name] = {"task": "classification", "score": score, "learning_rate": lr, "seed": seed}
                folder = root / name
                folder.mkdir(parents=True)
                config = {"task": "classification", "score": score, "seed": seed, "learning_rate": lr}
                (folder / "config.yaml").write_text(yaml.safe_dump(config))
                metrics = {
                    "main_metric": metric,
                    "adapter_parameters": 1000,
                    "eval": {"dev": {metric: dev}, "selection": {metric: selection}},
                }
                (folder / "metrics.json").write_text(json.dumps(metrics))
    (root / "sweep.yaml").write_text(yaml.safe_dump({"runs": manifest}))


def test_the_registry_has_a_clear_default():
    assert higher_is_better("accuracy") and higher_is_better("macro_f1") and higher_is_better("exact_match")
    assert higher_is_better("some_new_metric")  # the default
    assert not higher_is_better("mse")
    try:
        register_metric_direction("wer", higher_is_better=False)
        assert not higher_is_better("wer")
        register_metric_direction("wer", higher_is_better=True)
        assert higher_is_better("wer")
    finally:
        LOWER_IS_BETTER.discard("wer")
    with pytest.raises(TypeError, match="True or False"):
        register_metric_direction("wer", higher_is_better="no")


@pytest.mark.parametrize(
    "metric,lower,fisher,sensitivity",
    [
        ("mse", True, 1e-3, 3e-3),  # selection means: fisher 0.25 vs 0.85, sensitivity 0.60 vs 0.40 → the minimum
        ("pearson", False, 3e-3, 1e-3),
    ],  # the same numbers as a higher-is-better metric → the maximum
)
def test_tuned_selection_follows_the_metric_direction(metric, lower, fisher, sensitivity, tmp_path):
    _folder(tmp_path, metric)
    study, choices = tune(collect(tmp_path), "learning_rate", "selection")
    chosen = {c.row[0]: c for c in choices}
    assert chosen["fisher"].chosen == fisher and chosen["sensitivity"].chosen == sensitivity
    assert all(c.metric == metric and c.lower_is_better is lower for c in choices)
    kept = {(r.score, r.grid_values["learning_rate"]) for r in study.records}
    assert kept == {("fisher", fisher), ("sensitivity", sensitivity)}
    comparison = study.comparisons([Column("mine", "classification", "dev", metric)])
    assert [c.higher_is_better for c in comparison] == [not lower]
    assert main(["report", str(tmp_path), "--tuned", "learning_rate", "--no-plots"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert (f"(lowest {metric}: lower is better)" in report) is lower  # the appendix says which way it picked


def test_runs_ranked_on_different_metrics_are_not_compared(tmp_path):
    _folder(tmp_path, "mse")
    odd = tmp_path / "classification__fisher__learning_rate=0.003__seed2" / "metrics.json"
    metrics = json.loads(odd.read_text())
    metrics["main_metric"] = "pearson"
    metrics["eval"] = {split: {"pearson": value["mse"]} for split, value in metrics["eval"].items()}
    odd.write_text(json.dumps(metrics))
    with pytest.raises(
        ValueError,
        match=r"fisher on classification: the runs rank on different main metrics "
        r"\(mse, pearson\)",
    ):
        tune(collect(tmp_path), "learning_rate", "selection")


def test_an_undefined_correlation_does_not_win(tmp_path):
    runs = {"fisher": {1e-3: {1: (float("nan"), 0.1)}, 3e-3: {1: (0.2, 0.3)}}}
    _folder(tmp_path, "pearson", runs)
    _, choices = tune(collect(tmp_path), "learning_rate", "selection")
    assert choices[0].chosen == 3e-3
