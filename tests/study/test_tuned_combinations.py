"""Tuned selection over several grid keys: the best combination per (row, task) on the selection split, never on
dev; a key outside the tuned ones stays in the row; the appendix lists every combination that ran."""

from __future__ import annotations

import itertools
import json

import pytest
import yaml

from adalora_scores.cli import main
from adalora_scores.study.grid import run_name
from adalora_scores.study.results import collect
from adalora_scores.study.tuning import tune, tuned_keys

KEYS = ("learning_rate", "orth_reg_weight", "lora_alpha")
GRID = {"learning_rate": [1e-3, 3e-3], "orth_reg_weight": [0.0, 0.1], "lora_alpha": [16.0, 32.0]}
BEST = {"fisher": (3e-3, 0.0, 16.0), "sensitivity": (1e-3, 0.1, 32.0)}
"""The combination with the best selection accuracy per score."""
DECOY = (1e-3, 0.0, 32.0)
"""The combination with the best *dev* accuracy for both scores (and the worst selection accuracy)."""


def _results(score: str, combination: tuple, seed: int) -> tuple[float, float]:
    """(selection, dev) accuracy of one run."""
    if combination == BEST[score]:
        return 90.0 + seed, 70.0 + seed
    if combination == DECOY:
        return 50.0 + seed, 95.0
    return 60.0 + seed + GRID["learning_rate"].index(combination[0]), 60.0


def _combination_folder(root) -> dict[str, dict]:
    runs = {}
    for score, combination, seed in itertools.product(BEST, itertools.product(*GRID.values()), (1, 2)):
        values = {
            "task": "rte",
            "score": score,
            **dict(zip(KEYS, combination, strict=True)),
            "target_r": 4,
            "seed": seed,
        }
        name = run_name(values)
        runs[name] = values
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(yaml.safe_dump({**values, "method": "adalora"}))
        selection, dev = _results(score, combination, seed)
        metrics = {
            "main_metric": "accuracy",
            "adapter_parameters": 1000,
            "eval": {"dev": {"accuracy": dev}, "selection": {"accuracy": selection}},
        }
        (folder / "metrics.json").write_text(json.dumps(metrics))
    (root / "sweep.yaml").write_text(yaml.safe_dump({"runs": runs}))
    return runs


def test_tuned_keys_parse():
    assert tuned_keys("learning_rate, orth_reg_weight,learning_rate") == ("learning_rate", "orth_reg_weight")
    assert tuned_keys(["lora_alpha"]) == ("lora_alpha",)
    with pytest.raises(ValueError, match="at least one grid key"):
        tuned_keys(" , ")


def test_the_best_combination_is_chosen_on_the_selection_split(tmp_path):
    _combination_folder(tmp_path)
    study, choices = tune(collect(tmp_path), "learning_rate,orth_reg_weight,lora_alpha")
    by_score = {c.row[0]: c for c in choices}
    assert set(by_score) == {"fisher", "sensitivity"} and all(c.row[1] == "target_r=4" for c in choices)
    for score, best in BEST.items():
        choice = by_score[score]
        assert choice.chosen == choice.chosen_values == dict(zip(KEYS, best, strict=True))
        assert len(choice.candidates) == 8  # every combination that ran, in grid order
        assert [tuple(c.values.values()) for c in choice.candidates] == list(itertools.product(*GRID.values()))
        chosen = next(c for c in choice.candidates if c.values == choice.chosen_values)
        assert chosen.selection.mean == 91.5 and chosen.dev.mean == 71.5
    assert len(study.records) == 4 and {r.variant for r in study.records} == {"target_r=4"}
    assert len(study.expected) == 4  # only the chosen combinations' runs are expected


def test_tuned_report_over_three_keys(tmp_path):
    _combination_folder(tmp_path)
    assert main(["report", str(tmp_path), "--tuned", ",".join(KEYS), "--no-plots"]) == 0
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["tuned"] == {"key": ",".join(KEYS), "keys": list(KEYS), "select_on": "selection"}
    cells = {c["score"]: c for c in document["table1"]["cells"] if c["column"] == "RTE Acc"}
    assert cells["fisher"]["chosen"] == {"learning_rate": 3e-3, "orth_reg_weight": 0.0, "lora_alpha": 16.0}
    assert cells["fisher"]["mean"] == 71.5 and cells["sensitivity"]["mean"] == 71.5  # not the decoy's dev 95
    report = (tmp_path / "report.md").read_text()
    assert "learning_rate 0.003, orth_reg_weight 0.0, lora_alpha 16.0" in report
    assert "the combination of `learning_rate`, `orth_reg_weight`, `lora_alpha`" in report
    appendix = report.split("## Appendix: the whole `learning_rate`, `orth_reg_weight`, `lora_alpha` grid")[1]
    assert "| score | task | learning_rate | orth_reg_weight | lora_alpha | selection (main metric) |" in appendix
    assert appendix.count("✓") == 2 and "| `fisher` [target_r=4] | rte | 0.003 | 0.0 | 16.0 | 91.50" in appendix
    assert "have no result" not in report and "⚠" not in report
    # the settings table shows what the chosen runs ran with, from their config.yaml
    settings = report.split("### Settings each row ran with")[1].split("###")[0]
    fisher = next(line for line in settings.splitlines() if line.startswith("| `fisher`"))
    assert [c.strip() for c in fisher.split("|")[2:-1]] == ["0", "16", "1", "0.003"]  # c = α / init_r = 16 / 16
    choices = {c["score"]: c for c in document["choices"]}
    assert choices["sensitivity"]["chosen_values"] == {
        "learning_rate": 1e-3,
        "orth_reg_weight": 0.1,
        "lora_alpha": 32.0,
    }


def test_an_unknown_tuned_key_is_named(tmp_path, capsys):
    _combination_folder(tmp_path)
    assert main(["report", str(tmp_path), "--tuned", "learning_rate,warmup_ratio", "--no-plots"]) == 2
    assert "no run has a grid value for 'warmup_ratio'" in capsys.readouterr().err
