"""A fair comparison: the held-out selection split, tuned reporting (selection split vs dev), LoRA baselines with
parameter counts."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import yaml
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from adalora_scores.cli import main
from adalora_scores.engine.split import hold_out
from adalora_scores.study.grid import SweepSpec
from adalora_scores.study.report import build_report

TINY = [
    "num_epochs=1",
    "batch_size=4",
    "init_r=4",
    "target_r=2",
    "mask_interval=1",
    "max_seq_length=32",
    "learning_rate=5e-3",
    "eval_batch_size=8",
]


@dataclass(frozen=True)
class Item:
    text: str
    context: str


def test_hold_out_is_deterministic_disjoint_and_grouped():
    items = [Item(f"q{i}", f"c{i // 3}") for i in range(30)]  # 10 contexts of 3 questions
    kept, held = hold_out(items, 0.2, seed=0)
    assert len(held) == 6 and len(kept) == 24 and not set(kept) & set(held) and set(kept) | set(held) == set(items)
    assert hold_out(items, 0.2, seed=0) == (kept, held)  # same seed, same split
    assert hold_out(items, 0.2, seed=1)[1] != held
    assert [items.index(i) for i in held] == sorted(items.index(i) for i in held)  # original order kept
    kept, held = hold_out(items, 0.2, seed=0, group_key="context")
    assert len({i.context for i in held}) == 2 and not {i.context for i in held} & {i.context for i in kept}
    assert hold_out(items, 0.0, seed=0) == (items, [])
    with pytest.raises(ValueError, match="hold out all"):
        hold_out(items[:2], 0.99, seed=0)


def test_selection_split_is_disjoint_from_the_examples_trained_on(glue_root, tiny_model_dir, tmp_path, monkeypatch):
    from adalora_scores.engine import train as train_module

    seen = {}
    original = train_module.hold_out

    def spy(examples, fraction, seed, group_key=None):
        kept, held = original(examples, fraction, seed, group_key)
        seen["kept"], seen["held"] = kept, held
        return kept, held

    monkeypatch.setattr(train_module, "hold_out", spy)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "rte",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(glue_root / "rte"),
                "--output",
                str(out),
                *TINY,
                "selection_fraction=0.25",
                "selection_seed=3",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["train_examples"] == 18 and len(seen["held"]) == 6  # 24 rows, 25% held out
    assert not {(e.text_a, e.text_b) for e in seen["held"]} & {(e.text_a, e.text_b) for e in seen["kept"]}
    assert set(metrics["eval"]) == {"dev", "selection"} and "accuracy" in metrics["eval"]["selection"]
    assert yaml.safe_load((out / "config.yaml").read_text())["selection_examples"] == 6


def test_lora_baseline_runs_through_the_same_pipeline(glue_root, tiny_model_dir, tmp_path):
    out = tmp_path / "lora"
    assert (
        main(
            [
                "train",
                "--task",
                "rte",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(glue_root / "rte"),
                "--output",
                str(out),
                *TINY,
                "method=lora",
                "target_r=2",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    # tiny BERT: 2 layers × (q, k, v, o: 16→16; f1: 16→32; f2: 32→16); LoRA r=2 holds r·(d_in + d_out) each
    per_layer = 4 * (16 + 16) + (16 + 32) + (32 + 16)
    assert metrics["method"] == "lora" and metrics["adapter_parameters"] == 2 * 2 * per_layer
    assert metrics["trainable_parameters"] == metrics["adapter_parameters"] + metrics["head_parameters"]
    ranks = json.loads((out / "rank_pattern.json").read_text())
    assert len(ranks) == 12 and all(v["rank"] == 2 for v in ranks.values())
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    assert PeftModel.from_pretrained(base, out / "adapter").peft_config["default"].r == 2
    svd = tmp_path / "svd"
    assert (
        main(
            [
                "train",
                "--task",
                "rte",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(glue_root / "rte"),
                "--output",
                str(svd),
                *TINY,
                "method=svd_lora",
            ]
        )
        == 0
    )
    svd_metrics = json.loads((svd / "metrics.json").read_text())
    # SVD-LoRA: AdaLoRA's P Λ Q at rank target_r = 2 on all 12 matrices, λ counted; never allocated
    assert svd_metrics["method"] == "svd_lora"
    assert svd_metrics["adapter_parameters"] == svd_metrics["adapter_parameters_initial"] == 2 * per_layer * 2 + 2 * 12
    assert svd_metrics["final_budget"] == 2 * 12 and (svd / "allocations.jsonl").read_text() == ""
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    reloaded = PeftModel.from_pretrained(base, svd / "adapter")
    assert {p.shape[0] for n, p in reloaded.named_parameters() if "lora_E" in n} == {2}
    ada = tmp_path / "ada"
    assert (
        main(
            [
                "train",
                "--task",
                "rte",
                "--model",
                str(tiny_model_dir),
                "--data",
                str(glue_root / "rte"),
                "--output",
                str(ada),
                *TINY,
            ]
        )
        == 0
    )
    ada_metrics = json.loads((ada / "metrics.json").read_text())
    assert ada_metrics["adapter_parameters_initial"] == 4 * 2 * per_layer + 4 * 12  # init rank 4, λ counted
    kept = sum(v["rank"] for v in json.loads((ada / "rank_pattern.json").read_text()).values())
    assert (
        kept == ada_metrics["final_budget"]
        and ada_metrics["adapter_parameters"] < ada_metrics["adapter_parameters_initial"]
    )


def test_sweep_expands_baselines_and_per_task_grids():
    spec = SweepSpec(
        {
            "task": ["rte", "squad"],
            "score": ["fisher"],
            "seed": [1, 2],
            "learning_rate": {"default": [1e-3, 3e-3], "squad": [5e-4]},
        },
        presets={"default": "paper-glue", "squad": "paper-squad"},
        baselines={"lora_r8": {"method": "lora", "target_r": 8}, "lora_r2": {"method": "lora", "target_r": 2}},
    )
    runs = spec.runs()
    assert len(runs) == 3 * 2 * 2 + 3 * 1 * 2  # (fisher + 2 baselines) × seeds × task LRs
    lora = [r for r in runs if r.grid_values["score"] == "lora_r2"]
    assert all(r.config.method == "lora" and r.config.target_r == 2 for r in lora)
    assert {r.config.learning_rate for r in runs if r.config.task == "squad"} == {5e-4}
    with pytest.raises(ValueError, match="also scores"):
        SweepSpec({"task": ["rte"], "score": ["fisher"], "seed": [1]}, baselines={"fisher": {"method": "lora"}})


def test_a_baseline_list_is_that_rows_own_grid():
    """Learning-rate grids per method: the scores use the grid's list, the LoRA row its own."""
    spec = SweepSpec(
        {"task": ["rte"], "score": ["fisher"], "seed": [1, 2], "learning_rate": [1e-3, 3e-3]},
        presets={"default": "paper-glue"},
        baselines={"lora_r8": {"method": "lora", "target_r": 8, "learning_rate": ["5e-4"]}},
    )
    runs = spec.runs()
    assert len(runs) == 2 * 2 + 1 * 2
    lora = [r for r in runs if r.grid_values["score"] == "lora_r8"]
    assert {r.config.learning_rate for r in lora} == {5e-4} and all(r.config.method == "lora" for r in lora)
    assert [r.name for r in lora] == [
        "rte__lora_r8__learning_rate=0.0005__seed1",
        "rte__lora_r8__learning_rate=0.0005__seed2",
    ]
    assert {r.config.learning_rate for r in runs if r.grid_values["score"] == "fisher"} == {1e-3, 3e-3}
    with pytest.raises(ValueError, match=r"baselines.lora.num_epochs is a list.*grid.num_epochs: \[...\]"):
        SweepSpec({"task": ["rte"], "score": ["fisher"], "seed": [1]}, baselines={"lora": {"num_epochs": [1, 2]}})


# ---------------------------------------------------------------- tuned report on hand-made run folders
# (learning rate, seed) → (selection accuracy, dev accuracy). On the selection split 1e-3 wins (mean 71 vs 66);
# on dev 3e-3 wins (80 vs 75). The report must pick 1e-3 by default and 3e-3 with --select-on dev.
TUNING = {
    ("fisher", 1e-3): {1: (70.0, 74.0), 2: (72.0, 76.0)},
    ("fisher", 3e-3): {1: (65.0, 79.0), 2: (67.0, 81.0)},
    ("sensitivity", 1e-3): {1: (60.0, 70.0), 2: (62.0, 70.0)},
    ("sensitivity", 3e-3): {1: (66.0, 60.0), 2: (64.0, 62.0)},
}


def _tuning_folder(root):
    runs = {}
    for (score, lr), seeds in TUNING.items():
        for seed, (selection, dev) in seeds.items():
            values = {"task": "rte", "score": score, "learning_rate": lr, "seed": seed}
            name = f"rte__{score}__learning_rate={lr}__seed{seed}"
            runs[name] = values
            folder = root / name
            folder.mkdir(parents=True)
            (folder / "config.yaml").write_text(yaml.safe_dump({"task": "rte", "score": score, "seed": seed}))
            metrics = {
                "main_metric": "accuracy",
                "adapter_parameters": 1000,
                "eval": {"dev": {"accuracy": dev}, "selection": {"accuracy": selection}},
            }
            (folder / "metrics.json").write_text(json.dumps(metrics))
    (root / "sweep.yaml").write_text(yaml.safe_dump({"runs": runs}))


def test_tuned_report_selects_on_the_held_out_split(tmp_path):
    _tuning_folder(tmp_path)
    assert main(["report", str(tmp_path), "--tuned", "learning_rate", "--no-plots"]) == 0
    document = json.loads((tmp_path / "report.json").read_text())
    cells = {c["score"]: c for c in document["table1"]["cells"] if c["column"] == "RTE Acc"}
    assert cells["fisher"]["chosen"] == 1e-3 and cells["fisher"]["mean"] == 75.0  # not dev's best (80)
    assert cells["sensitivity"]["chosen"] == 3e-3 and cells["sensitivity"]["mean"] == 61.0
    report = (tmp_path / "report.md").read_text()
    assert "selected on a held-out split" in report and "learning_rate 0.001" in report
    assert "Appendix: the whole `learning_rate` grid" in report and report.count("✓") == 2
    assert "⚠" not in report and "have no result" not in report  # only the chosen value's runs are expected


def test_tuned_report_on_dev_is_labelled(tmp_path):
    _tuning_folder(tmp_path)
    build_report(tmp_path, plot=False, tune_key="learning_rate", select_on="dev")
    cells = {
        c["score"]: c
        for c in json.loads((tmp_path / "report.json").read_text())["table1"]["cells"]
        if c["column"] == "RTE Acc"
    }
    assert cells["fisher"]["chosen"] == 3e-3 and cells["fisher"]["mean"] == 80.0
    assert "selected on dev" in (tmp_path / "report.md").read_text()


def test_tuned_report_without_selection_split_says_how_to_fix(tmp_path, capsys):
    _tuning_folder(tmp_path)
    for path in tmp_path.glob("*/metrics.json"):
        metrics = json.loads(path.read_text())
        del metrics["eval"]["selection"]
        path.write_text(json.dumps(metrics))
    assert main(["report", str(tmp_path), "--tuned", "learning_rate", "--no-plots"]) == 2
    assert "selection_fraction" in capsys.readouterr().err


def test_report_names_lora_rows_and_their_parameters(tmp_path):
    runs = [
        ("a", {"score": "sensitivity", "method": "adalora"}, 1_270_000),
        ("b", {"score": "sensitivity", "method": "lora", "target_r": 2}, 330_000),
    ]
    for name, config, params in runs:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump({"task": "rte", "seed": 1, **config}))
        metrics = {"adapter_parameters": params, "eval": {"dev": {"accuracy": 80.0}}}
        (folder / "metrics.json").write_text(json.dumps(metrics))
    build_report(tmp_path, plot=False)
    rows: dict[str, str] = {}  # the first table's rows (the study's reference table follows it)
    for line in (tmp_path / "report.md").read_text().split("### Significance")[0].splitlines():
        if line.startswith("| `"):
            rows.setdefault(line.split("|")[1].strip(), line.split("|")[2].strip())
    assert rows["`sensitivity`"] == "1.27M" and rows["`lora_r2`"] == "0.33M"
