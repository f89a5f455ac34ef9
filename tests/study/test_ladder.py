"""The ladder: rows that each change one thing, checked when the sweep is resolved, and the report's "Where the gap
goes" (paired Δ per step against hand-computed values and scipy, Holm over the steps, the waterfall, the sentence)."""

from __future__ import annotations

import json
import statistics

import pytest
import yaml
from scipy.stats import ttest_rel

from adalora_scores.cli import main
from adalora_scores.config import TrainConfig
from adalora_scores.study.gap import ladders, price_steps
from adalora_scores.study.grid import SweepSpec, load_sweep, run_name
from adalora_scores.study.ladder import Step, chain, ladder_steps, step_changes, step_text
from adalora_scores.study.paper import Column
from adalora_scores.study.report import build_report
from adalora_scores.study.results import collect, holm


def _config(**values) -> dict:
    return TrainConfig(task="rte", **values).to_dict()


def test_steps_default_to_the_row_before_and_follow_from():
    rows = {"a": {}, "b": {"x": 1}, "c": {"from": "a"}, "d": {}}
    steps = ladder_steps(rows)
    assert steps == [Step("a", None), Step("b", "a"), Step("c", "a"), Step("d", "c")]
    assert chain(steps) == ["a", "c", "d"]  # the waterfall's path from the first row to the last
    with pytest.raises(ValueError, match="first row.*remove its from"):
        ladder_steps({"a": {"from": "b"}, "b": {}})
    with pytest.raises(ValueError, match="'z' is not an earlier row of the ladder; name one of a, b"):
        ladder_steps({"a": {}, "b": {}, "c": {"from": "z"}})
    with pytest.raises(ValueError, match="must be a mapping of settings"):
        ladder_steps({"a": [1, 2]})


def test_what_a_step_changes():
    lora = _config(method="lora", target_r=8, update_scale=2.0)
    svd0 = _config(method="svd_lora", target_r=8, update_scale=2.0, orth_reg_weight=0.0)
    svd = _config(method="svd_lora", target_r=8, update_scale=2.0)
    random = _config(score="random", update_scale=2.0)
    sensitivity = _config(score="sensitivity", update_scale=2.0)
    paper_alpha = _config(score="sensitivity", lora_alpha=16)
    # LoRA has no regulariser (its γ is 0), and neither baseline has a score or an initial rank
    assert step_changes(lora, svd0) == [("method", "lora", "svd_lora")]
    assert step_changes(svd0, svd) == [("orth_reg_weight", 0.0, 0.1)]
    assert step_changes(svd, random) == [("method", "svd_lora", "adalora")]
    assert step_text(step_changes(svd, random), random) == (
        "method svd_lora → adalora (score random, init_r 16 → target_r 8)"
    )
    assert step_changes(random, sensitivity) == [("score", "random", "sensitivity")]
    assert step_changes(sensitivity, paper_alpha) == [("update_scale", 2.0, 1.0)]  # c = α / init_r = 16 / 16
    # α and c giving the same scale are no change; grid keys are left out
    assert step_changes(_config(lora_alpha=32), _config(update_scale=2.0)) == []
    faster = _config(update_scale=2.0, learning_rate=5e-3)
    assert step_changes(sensitivity, faster, skip=["learning_rate"]) == []
    assert step_text(step_changes(lora, svd)) == "method lora → svd_lora; orth_reg_weight 0 → 0.1"


def _spec(ladder: dict, **grid) -> SweepSpec:
    fixed = {"update_scale": 2.0, "orth_reg_weight": 0.0}
    return SweepSpec({"task": ["rte"], "seed": [1, 2], **grid}, fixed=fixed, ladder=ladder)


def test_a_ladder_sweep_resolves_its_rows_in_order_and_checks_each_step():
    spec = _spec(
        {
            "lora_r8": {"method": "lora"},
            "svd_lora_r8": {"method": "svd_lora"},
            "random": {"score": "random"},
            "paper_alpha": {"score": "random", "lora_alpha": 8},
        },
        learning_rate=[1e-3, 3e-3],
    )
    runs = spec.runs()
    assert [run.grid_values["score"] for run in runs[::4]] == ["lora_r8", "svd_lora_r8", "random", "paper_alpha"]
    assert runs[0].name == "rte__lora_r8__learning_rate=0.001__seed1"
    assert len(runs) == 4 * 2 * 2
    by_name = {run.name: run.config for run in runs}
    assert by_name["rte__lora_r8__learning_rate=0.001__seed1"].lora_alpha == 16.0  # c = 2 at rank 8
    assert by_name["rte__random__learning_rate=0.001__seed1"].lora_alpha == 32.0  # c = 2 at init_r 16
    assert by_name["rte__paper_alpha__learning_rate=0.001__seed1"].lora_alpha == 8  # the row's α replaces the set c
    assert spec.step_changes == {
        "svd_lora_r8": "method lora → svd_lora",
        "random": "method svd_lora → adalora (score random, init_r 16 → target_r 8)",
        "paper_alpha": "c (update scale) 2 → 0.5",
    }
    two = _spec({"lora_r8": {"method": "lora"}, "random": {"score": "random", "weight_decay": 0.0}})
    with pytest.raises(
        ValueError, match="ladder row random changes method lora → adalora; weight_decay 0.01 → 0 from"
    ):
        two.runs()
    with pytest.raises(ValueError, match="changes nothing from lora_r8"):
        _spec({"lora_r8": {"method": "lora"}, "again": {"method": "lora"}}).runs()
    with pytest.raises(ValueError, match=r"ladder row\(s\) \['sensitivity'\] are also scores or baselines"):
        SweepSpec({"task": ["rte"], "score": ["sensitivity"], "seed": [1]}, ladder={"sensitivity": {}})


def test_the_bundled_ladder_file_steps_one_thing_at_a_time():
    spec = load_sweep("ladder")
    runs = spec.runs()
    assert len(runs) == 8 * 2 * 5
    assert [step.row for step in spec.steps][0] == "lora_r8"
    assert chain(spec.steps) == [
        "lora_r8",
        "svd_lora_r8_gamma0",
        "svd_lora_r8",
        "random",
        "sensitivity",
        "sensitivity_paper_alpha",
    ]
    assert spec.step_changes["sensitivity_paper_alpha"] == "c (update scale) 2 → 1"


def test_the_scale_is_one_setting_in_rows_grids_and_overrides(tmp_path, capsys):
    # a row's α replaces the grid's list of c: one run per seed, named without the grid's c
    spec = SweepSpec(
        {"task": ["rte"], "score": ["sensitivity"], "seed": [1], "update_scale": [1.0, 2.0]},
        baselines={"lora_r8": {"method": "lora", "target_r": 8, "lora_alpha": 64}},
    )
    names = {run.name: run.config.lora_alpha for run in spec.runs()}
    expected = {"rte__sensitivity__update_scale=1.0__seed1": 16.0, "rte__sensitivity__update_scale=2.0__seed1": 32.0}
    assert names == {**expected, "rte__lora_r8__seed1": 64}
    # a tuned scale is no step's change (here the first grid value differs in c between SVD-LoRA and AdaLoRA)
    ladder = SweepSpec(
        {"task": ["rte"], "seed": [1], "lora_alpha": [16.0, 32.0]},
        ladder={"svd_lora_r8": {"method": "svd_lora"}, "random": {"score": "random"}},
    )
    ladder.runs()
    assert ladder.step_changes["random"].startswith("method svd_lora → adalora")
    # on the command line, α replaces the file's c (in set: and in the grid)
    out = tmp_path / "out"
    assert main(["sweep", "ladder", "--output", str(out), "--dry-run", "lora_alpha=32", "--seeds", "1"]) == 2
    # one α for every row is another c for AdaLoRA (α / init_r 16) than for SVD-LoRA (α / target_r 8): refused
    assert "ladder row random changes method svd_lora → adalora; c (update scale) 4 → 2" in capsys.readouterr().err
    assert (
        main(["sweep", "paper-tuned", "--output", str(out), "--dry-run", "lora_alpha=16", "task=rte", "--seeds", "1"])
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        "update_scale" not in printed and "rte__lora_r8__learning_rate=0.0002__orth_reg_weight=0.0__seed1" in printed
    )


def test_sweep_overrides_replace_grid_lists(tmp_path, capsys):
    out = tmp_path / "out"
    assert (
        main(
            ["sweep", "ladder", "--output", str(out), "--dry-run", "task=rte", "learning_rate=[1e-3]", "--seeds", "7"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "pending    rte__lora_r8__learning_rate=0.001__seed7" in printed and "8 of 8 runs" in printed
    assert main(["sweep", "ladder", "--output", str(out), "--dry-run", "learning_rate=[]"]) == 2


# seed → dev value of each row: b costs 5 points on every seed (with a little spread), c is noise around b
VALUES = {
    "a": {1: 80.0, 2: 82.0, 3: 81.0, 4: 83.0},
    "b": {1: 75.5, 2: 76.5, 3: 76.0, 4: 77.5},
    "c": {1: 76.0, 2: 76.0, 3: 77.0, 4: 76.5},
    "d": {1: 79.0, 2: 83.0, 3: 80.0, 4: 84.0},
}


def _ladder_folder(root) -> None:
    runs = {}
    for row, values in VALUES.items():
        for seed, dev in values.items():
            grid = {"task": "rte", "score": row, "learning_rate": 1e-3, "seed": seed}
            name = run_name(grid)
            runs[name] = grid
            folder = root / name
            folder.mkdir(parents=True)
            config = {**grid, "method": "lora" if row == "a" else "adalora", "score": "sensitivity", "lora_alpha": 16}
            (folder / "config.yaml").write_text(yaml.safe_dump(config))
            (folder / "grid.json").write_text(json.dumps({"row": row, "grid_values": grid}))
            metrics = {"main_metric": "accuracy", "eval": {"dev": {"accuracy": dev}, "selection": {"accuracy": dev}}}
            (folder / "metrics.json").write_text(json.dumps(metrics))
    changes = {"a": None, "b": "method lora → adalora", "c": "score x → y", "d": "γ 0 → 1"}
    entries = [
        {"row": row, "from": {"b": "a", "c": "b", "d": "a"}.get(row), "change": change}
        for row, change in changes.items()
    ]
    manifest = {"specs": [{"source": "ladder.yaml", "grid": {}, "ladder": entries}], "runs": runs}
    (root / "sweep.yaml").write_text(yaml.safe_dump(manifest))


def test_each_step_is_priced_against_the_row_it_steps_from(tmp_path):
    _ladder_folder(tmp_path)
    study = collect(tmp_path)
    (ladder,) = ladders(yaml.safe_load((tmp_path / "sweep.yaml").read_text())["specs"])
    column = Column("rte accuracy", "rte", "dev", "accuracy")
    priced = {step.step.row: step for step in price_steps(study, ladder, [column])}
    assert set(priced) == {"b", "c", "d"}
    expected_p = {}
    for row, parent in (("b", "a"), ("c", "b"), ("d", "a")):
        differences = [VALUES[row][s] - VALUES[parent][s] for s in range(1, 5)]
        assert priced[row].result.mean_difference == pytest.approx(statistics.fmean(differences))
        expected_p[row] = ttest_rel(list(VALUES[row].values()), list(VALUES[parent].values())).pvalue
        assert priced[row].p == pytest.approx(expected_p[row])
        assert priced[row].n == 4 and priced[row].step.parent == parent
    adjusted = dict(zip(expected_p, holm(list(expected_p.values())), strict=True))
    assert {row: s.p_holm for row, s in priced.items()} == pytest.approx(adjusted)
    assert priced["b"].result.mean_difference == pytest.approx(-5.125) and priced["b"].detected
    assert not priced["c"].detected and not priced["d"].detected
    assert priced["b"].change == "method lora → adalora"


def test_the_report_has_the_gap_table_waterfall_and_sentence(tmp_path):
    _ladder_folder(tmp_path)
    report = build_report(tmp_path, tune_key="learning_rate").read_text()
    section = report[report.index("## Where the gap goes") :]
    assert "| `b` | `a` | method lora → adalora | 76.38 ± 0.85 | 4 | -5.12 |" in section
    assert "On rte accuracy, detected: `b` (method lora → adalora: Δ = -5.12" in section and "a cost" in section
    assert "; for the other steps (`c`, `d`) only a difference of" in section and "not ruled out." in section
    assert "![" in section and (tmp_path / "plots" / "waterfall_rte.png").stat().st_size > 1000
    document = json.loads((tmp_path / "report.json").read_text())
    (entry,) = document["ladder"]["ladders"]
    assert entry["chain"] == ["a", "d"] and [s["row"] for s in entry["steps"]] == ["b", "c", "d"]
    # the chain's steps add up to the last row's mean minus the first's
    steps = {s["row"]: s for s in entry["steps"]}
    assert steps["d"]["mean_difference"] == pytest.approx(
        statistics.fmean(VALUES["d"].values()) - statistics.fmean(VALUES["a"].values())
    )


def test_one_ladder_run_again_with_more_seeds_is_one_ladder(tmp_path):
    _ladder_folder(tmp_path)
    manifest = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
    manifest["specs"].append({**manifest["specs"][0], "grid": {"seed": [5]}})  # the same ladder, another sweep
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(manifest))
    report = build_report(tmp_path, plot=False).read_text()
    assert report.count("### rte accuracy") == 1 and "### rte accuracy [learning_rate=0.001]" in report
    assert "not in tuned mode, so each step is priced at each grid value" in report


def test_a_folder_without_a_ladder_has_no_gap_section(tmp_path):
    _ladder_folder(tmp_path)
    manifest = yaml.safe_load((tmp_path / "sweep.yaml").read_text())
    manifest["specs"][0].pop("ladder")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(manifest))
    assert "Where the gap goes" not in build_report(tmp_path, plot=False).read_text()


def test_the_bundled_ladder_runs_on_the_demo_task_and_reports_where_the_gap_goes(tmp_path, capsys):
    """The whole ladder, small: the demo task, a tiny BERT, 2 learning rates and 2 seeds (32 runs of 60 steps), then
    the tuned report with its gap section."""
    from adalora_scores.demo import _tiny_model
    from adalora_scores.tasks.contrast import TRAIN_SIZE, make_examples

    model = _tiny_model(tmp_path / "tiny", [sentence for sentence, _ in make_examples(TRAIN_SIZE, 0)])
    out = tmp_path / "ladder"
    settings = [
        "task=contrast_sentiment",
        "learning_rate=[5e-3,2e-2]",
        f"model={model}",
        "num_epochs=2",
        "max_seq_length=32",
        "batch_size=16",
        "init_r=4",
        "target_r=2",
        "mask_interval=2",
    ]
    assert main(["sweep", "ladder", "--output", str(out), "--seeds", "1,2", *settings]) == 0
    assert main(["report", str(out), "--tuned", "learning_rate"]) == 0
    report = (out / "report.md").read_text()
    section = report[report.index("## Where the gap goes") : report.index("## Appendix")]
    for row, change in (
        ("svd_lora_r8_gamma0", "method lora → svd_lora"),
        ("svd_lora_r8", "orth_reg_weight 0 → 0.1"),
        ("random", "method svd_lora → adalora (score random, init_r 4 → target_r 2)"),
        ("sensitivity_paper_alpha", "c (update scale) 2 → 4"),
    ):
        assert f"| `{row}` |" in section and change in section
    assert "On contrast_sentiment accuracy," in section
    assert (out / "plots" / "waterfall_contrast_sentiment.png").is_file()
    document = json.loads((out / "report.json").read_text())
    assert len(document["ladder"]["ladders"][0]["steps"]) == 7 and document["runs"] == 8 * 2  # at the chosen rates
    settings_table = report[report.index("### Settings each row ran with") :]
    assert "| `lora_r8` | – | 4 | 2 |" in settings_table  # LoRA: no γ shown, α = c · r = 2 · 2
