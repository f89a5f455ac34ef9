"""Sweeps (expansion, sharding, skipping, recovery after a kill), the report (hand-made run folders with known
numbers, the paper's averaging convention, missing cells, paired tests against scipy) and the demo."""

from __future__ import annotations

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from scipy.stats import ttest_rel

from adalora_scores.cli import main
from adalora_scores.study.grid import SweepSpec, load_sweep, shard
from adalora_scores.study.paper import PAPER, PAPER_ALL_AVERAGE, TABLE1
from adalora_scores.study.report import build_report
from adalora_scores.study.results import collect, holm, paired_test
from adalora_scores.study.sweep import run_status, run_sweep

GRID = {"task": ["rte", "mrpc"], "score": ["sensitivity", "fisher"], "seed": [1, 2], "learning_rate": [1e-3, 2e-3]}


def test_expansion_names_and_presets():
    runs = SweepSpec(GRID, presets={"default": "paper-glue"}, fixed={"init_r": 12}, data="/data").runs()
    assert len(runs) == 16 and len({r.name for r in runs}) == 16
    first = runs[0]
    assert first.name == "rte__sensitivity__learning_rate=0.001__seed1"
    assert first.config.learning_rate == 1e-3 and first.config.init_r == 12 and first.config.data == "/data/rte"
    assert first.config.orth_reg_weight == 0.3  # paper-glue's RTE entry is applied under the grid values
    assert {r.config.task for r in runs} == {"rte", "mrpc"}
    with pytest.raises(ValueError, match=r"run rte__sensitivity__learning_rate=0.001__seed1: target_r \(8\)"):
        SweepSpec(GRID, presets={"default": "paper-glue"}, fixed={"init_r": 6}).runs()
    with pytest.raises(ValueError, match="needs a 'seed' list"):
        SweepSpec({"task": ["rte"], "score": ["fisher"]})
    with pytest.raises(ValueError, match="unknown config key"):
        SweepSpec({**GRID, "learning_rat": [1.0]})


@pytest.mark.parametrize("count", [1, 2, 3, 5, 16, 20])
def test_shards_partition_the_grid(count):
    runs = SweepSpec(GRID).runs()
    parts = [shard(runs, i, count) for i in range(1, count + 1)]
    names = [r.name for part in parts for r in part]
    assert sorted(names) == sorted(r.name for r in runs) and len(names) == len(set(names))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_paper_sweep_file_covers_the_tables():
    spec = load_sweep("paper", seeds=[1, 2, 3])
    runs = spec.runs()
    assert len(runs) == 10 * (8 + 1) * 3  # 8 scores and the svd_lora control row
    rows = {r.grid_values["score"] for r in runs}
    assert {"fisher_per_example", "gsnr_per_example", "fisher", "gsnr", "random", "svd_lora_r8"} <= rows
    svd = next(r for r in runs if r.grid_values["score"] == "svd_lora_r8")
    assert svd.config.method == "svd_lora" and svd.config.target_r == 8
    squad = next(r for r in runs if r.config.task == "squad_v2")
    assert squad.config.max_seq_length == 384 and squad.config.batch_size == 16  # paper-squad preset
    tuned = load_sweep("paper-tuned").runs()
    assert len(tuned) == (12 * 2 * 2 + 2 * 2) * 3 * (8 * 5 + 2 * 4)  # γ and c tuned, LoRA's γ fixed at 0
    lora = [r.config for r in tuned if r.grid_values["score"] == "lora_r8"]
    assert {c.orth_reg_weight for c in lora} == {0.0} and {c.lora_alpha for c in lora} == {8.0, 16.0}  # c · 8
    adalora = [r.config for r in tuned if r.config.method == "adalora" and r.config.task == "rte"]
    assert {(c.orth_reg_weight, c.lora_alpha) for c in adalora} == {(0.0, 16.0), (0.0, 32.0), (0.1, 16.0), (0.1, 32.0)}
    assert all(r.config.selection_fraction == 0.1 for r in tuned)
    assert {r.config.learning_rate for r in tuned if r.config.task == "squad"} == {2e-4, 5e-4, 1e-3, 2e-3}


def _fake_train(fail: set[str] = frozenset()):
    """Writes a run folder like ``train`` does (config, then metrics last); raises for names in ``fail``."""
    calls = []

    def train(config, folder, overwrite=False):
        folder = Path(folder)
        calls.append(folder.name)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
        if folder.name in fail:
            raise RuntimeError("injected failure")
        metrics = {"eval": {"dev": {"accuracy": 50.0 + config.seed}}}
        (folder / "metrics.json").write_text(json.dumps(metrics))

    return train, calls


def test_sweep_skips_finished_reruns_failed_and_keeps_others(tmp_path):
    runs = SweepSpec(GRID).runs()
    broken = runs[3].name
    train, calls = _fake_train(fail={broken})
    result = run_sweep(tmp_path, runs, train_fn=train, echo=lambda *_: None)
    assert result.failed == [broken] and len(result.ran) == 15
    assert "injected failure" in (tmp_path / broken / "error.txt").read_text()
    assert run_status(tmp_path, runs[3]) == "failed"
    before = {r.name: (tmp_path / r.name / "metrics.json").read_bytes() for r in runs if r.name != broken}
    interrupted = runs[5].name  # simulate a kill: config and log written, no metrics
    (tmp_path / interrupted / "metrics.json").unlink()
    train, calls = _fake_train()
    result = run_sweep(tmp_path, runs, train_fn=train, echo=lambda *_: None)
    assert sorted(calls) == sorted([broken, interrupted]) and not result.failed
    assert not (tmp_path / broken / "error.txt").exists()
    after = {name: (tmp_path / name / "metrics.json").read_bytes() for name in before if name != interrupted}
    assert after == {name: before[name] for name in after}
    changed = SweepSpec({**GRID}, fixed={"init_r": 12}).runs()
    with pytest.raises(FileExistsError, match="different config"):
        run_sweep(tmp_path, changed, train_fn=train, echo=lambda *_: None)


def test_sweep_recovers_after_a_run_is_killed(tmp_path, tiny_model_dir):
    from adalora_scores.study.claims import machine_id

    if machine_id() is None:
        pytest.skip("no machine id (not Linux): a killed worker's claim is taken over only after --claim-timeout")
    from adalora_scores.tasks.contrast import write_contrast_task

    data = write_contrast_task(tmp_path / "data", train=400, dev=40)
    spec = tmp_path / "sweep.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "grid": {"task": ["sst2"], "score": ["fisher", "gsnr", "movement"], "seed": [1]},
                "set": {
                    "model": str(tiny_model_dir),
                    "num_epochs": 1,
                    "batch_size": 2,
                    "max_seq_length": 24,
                    "init_r": 4,
                    "target_r": 2,
                    "mask_interval": 1,
                    "checkpoint_every": 20,
                },
                "data": {"sst2": str(data)},
            }
        )
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "adalora_scores.cli", "sweep", str(spec), "--output", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "sst2__gsnr__seed1" / "log.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.is_file() and len(log.read_text().splitlines()) >= 25):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "sst2__gsnr__seed1" / "metrics.json").exists()  # killed midway
    assert json.loads((out / "sst2__gsnr__seed1" / "claim.json").read_text())["pid"] == process.pid  # left behind
    first = (out / "sst2__fisher__seed1" / "metrics.json").read_bytes()
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    assert (out / "sst2__fisher__seed1" / "metrics.json").read_bytes() == first  # skipped, untouched
    for name in ("sst2__gsnr__seed1", "sst2__movement__seed1"):
        assert json.loads((out / name / "metrics.json").read_text())["steps"] == 200
    resumed = json.loads((out / "sst2__gsnr__seed1" / "metrics.json").read_text())["resumed_from_step"]
    assert resumed and resumed % 20 == 0  # the killed run continued from its last checkpoint, not from scratch
    # the killed worker's claim (its process gone, on this host) was taken over at once, and the report says so
    (takeover,) = [
        json.loads(line) for line in (out / "sst2__gsnr__seed1" / "takeovers.jsonl").read_text().splitlines()
    ]
    assert takeover["previous"]["pid"] == process.pid and takeover["resumed_from_checkpoint"] is True
    assert takeover["reason"] == f"its process {process.pid} on this host is gone"  # seen at once, no timeout
    assert not list(out.glob("*/claim.json"))
    build_report(out, plot=False)
    assert f"- `sst2__gsnr__seed1`: claim of {socket.gethostname()}:{process.pid}" in (out / "report.md").read_text()
    assert f"resumed from its checkpoint at step {resumed}" in (out / "report.md").read_text()


# ---------------------------------------------------------------- report on hand-made run folders
def _write_run(root: Path, task: str, score: str, seed: int, evals: dict) -> None:
    folder = root / f"{task}__{score}__seed{seed}"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"task": task, "score": score, "seed": seed}))
    (folder / "metrics.json").write_text(json.dumps({"eval": evals}))


VALUES = {  # score → seed → value used for every accuracy column (MNLI mm gets value + 1)
    "sensitivity": {1: 80.0, 2: 82.0, 3: 84.0},
    "fisher_per_example": {1: 81.0, 2: 84.0, 3: 84.5},  # the paper's Fisher column
}


def _glue_study(root: Path, skip: tuple[str, str] | None = None) -> None:
    for score, seeds in VALUES.items():
        for seed, v in seeds.items():
            for task in ("mrpc", "sst2", "cola", "qqp", "qnli", "rte", "mnli", "stsb"):
                if skip == (score, task):
                    continue
                evals = {
                    "dev": {
                        "accuracy": v,
                        "f1": v - 2,
                        "matthews_correlation": v - 10,
                        "pearson": v + 5,
                        "spearman": v + 3,
                    }
                }
                if task == "mnli":
                    evals = {"dev_matched": {"accuracy": v}, "dev_mismatched": {"accuracy": v + 1}}
                _write_run(root, task, score, seed, evals)


def test_report_numbers_averages_and_significance(tmp_path):
    _glue_study(tmp_path)
    build_report(tmp_path, plot=False)
    cells = {
        (c["score"], c["column"]): c for c in json.loads((tmp_path / "report.json").read_text())["table1"]["cells"]
    }
    sst2 = cells[("fisher_per_example", "SST-2 Acc")]
    assert sst2["mean"] == pytest.approx(statistics.fmean([81.0, 84.0, 84.5]))
    assert sst2["std"] == pytest.approx(statistics.stdev([81.0, 84.0, 84.5])) and sst2["n"] == 3
    assert sst2["paper"] == 95.64 and sst2["difference"] == pytest.approx(sst2["mean"] - 95.64)
    assert cells[("sensitivity", "CoLA Mcc")]["mean"] == pytest.approx(72.0)
    assert cells[("sensitivity", "STS-B Corr")]["mean"] == pytest.approx(87.0)  # Pearson
    study = collect(tmp_path)
    # paper convention: 9 columns: 6 accuracy-like (v), CoLA v − 10, MNLI mm v + 1, STS-B v + 5 → v − 4/9 per seed
    average = study.paper_average(("sensitivity", ""), TABLE1)
    assert average.mean == pytest.approx(82.0 + (-10 + 1 + 5) / 9)
    assert average.std == pytest.approx(statistics.stdev([80.0, 82.0, 84.0]))
    # standard GLUE: 8 tasks: mrpc (v + v − 2)/2, qqp same, cola v − 10, stsb (v + 5 + v + 3)/2, mnli v + 0.5, others v
    assert study.glue_average(("sensitivity", "")).mean == pytest.approx(82.0 + (-1 - 1 - 10 + 4 + 0.5) / 8)
    report = (tmp_path / "report.md").read_text()
    assert "All Ave. (paper convention)" in report and "GLUE avg. (standard)" in report
    tests = json.loads((tmp_path / "report.json").read_text())["table1"]["significance"]
    sst2_test = next(t for t in tests if t["column"] == "SST-2 Acc")
    expected = ttest_rel([81.0, 84.0, 84.5], [80.0, 82.0, 84.0])
    assert sst2_test["t"] == pytest.approx(expected.statistic) and sst2_test["p"] == pytest.approx(expected.pvalue)
    assert sst2_test["p_holm"] >= sst2_test["p"]
    assert (tmp_path / "table1.csv").read_text().count("\n") == 2 * 9 + 1


def test_missing_task_is_shown_missing_not_averaged(tmp_path):
    _glue_study(tmp_path, skip=("fisher_per_example", "rte"))
    manifest = {
        "runs": {
            f"{t}__{s}__seed{k}": {"task": t, "score": s, "seed": k}
            for s in VALUES
            for k in (1, 2, 3)
            for t in ("mrpc", "sst2", "cola", "qqp", "qnli", "rte", "mnli", "stsb")
        }
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(manifest))
    build_report(tmp_path, plot=False)
    report = (tmp_path / "report.md").read_text()
    fisher_row = next(line for line in report.splitlines() if line.startswith("| `fisher_per_example`"))
    cells = [c.strip() for c in fisher_row.split("|")[1:-1]]
    assert cells[7].startswith("missing")  # RTE (after the score and parameter columns)
    assert cells[11].startswith("missing") and cells[12] == "missing"  # both averages need every task
    assert "3 of 48 runs of the sweep have no result" in report and "`rte__fisher_per_example__seed2`" in report
    # the paper's values: a reference table
    assert "missing · paper" not in report and "| `fisher_per_example` | 89.46 | 95.64 |" in report


def test_partial_seeds_are_flagged(tmp_path):
    _write_run(tmp_path, "rte", "sensitivity", 1, {"dev": {"accuracy": 70.0}})
    runs = {f"rte__sensitivity__seed{k}": {"task": "rte", "score": "sensitivity", "seed": k} for k in (1, 2)}
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"runs": runs}))
    build_report(tmp_path, plot=False)
    assert "70.00 (1) ⚠ 1 of 2 seeds missing" in (tmp_path / "report.md").read_text()


def test_holm_by_hand_and_paper_average_convention():
    # p = (0.01, 0.04, 0.03): sorted 0.01·3 = 0.03, 0.03·2 = 0.06, max(0.06, 0.04·1) = 0.06
    assert holm([0.01, 0.04, 0.03, None]) == pytest.approx([0.03, 0.06, 0.06, None])
    for score, printed in PAPER_ALL_AVERAGE.items():  # the convention reproduces the study's printed averages
        assert statistics.fmean(PAPER[(score, c.label)] for c in TABLE1) == pytest.approx(printed, abs=0.005)


# ---------------------------------------------------------------- CLI and demo
def test_sweep_cli_dry_run_writes_nothing(tmp_path, capsys):
    spec = tmp_path / "grid.yaml"
    spec.write_text(yaml.safe_dump({"grid": GRID}))
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--output", str(out), "--dry-run", "--shard", "2/3", "--seeds", "7"]) == 0
    printed = capsys.readouterr().out
    assert "3 of 8 runs (shard 2/3)" in printed and "seed7" in printed and not out.exists()
    assert main(["sweep", str(spec), "--output", str(out), "--shard", "4/3"]) == 2
    assert "between 1 and n" in capsys.readouterr().err


def test_demo_runs_the_whole_flow_with_a_tiny_model(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--tiny", "--seeds", "1,2", "num_epochs=1", "batch_size=32"]) == 0
    printed = capsys.readouterr().out
    assert "tiny random BERT" in printed and "not a result" in printed
    report = (out / "report.md").read_text()
    assert "A demonstration of the workflow, not a result" in report and "contrast_sentiment accuracy" in report
    assert "SST-2" not in report and "Table 1" not in report  # its own task, never in a GLUE column
    manifest = yaml.safe_load((out / "sweep.yaml").read_text())
    rows = len(__import__("adalora_scores").list_scores()) + 1  # every score and the svd_lora control
    assert len(manifest["runs"]) == 2 * rows
    assert "`random`" in report and "`random_redrawn`" in report and "`svd_lora_r4`" in report
    assert "MDD (80%)" in report and "- `random` vs `sensitivity` on contrast_sentiment accuracy: Δ" in report
    assert "missing" not in report and "## Score diagnostics" in report and "Spearman ρ" in report
    task = "contrast_sentiment"
    for kind in ("ranks", "agreement", "churn", "trajectories"):
        name = f"{kind}_{task}.png"
        assert (out / "plots" / name).stat().st_size > 5000 and f"plots/{name}" in report
    assert (out / "plots" / "metrics.png").stat().st_size > 5000 and not list((out / "plots").glob("budget_*"))
    diagnostics = json.loads((out / "report.json").read_text())["diagnostics"][task]
    assert len(diagnostics["reliability"]) == rows
    pairs = {r["score"]: r["pairs"] for r in diagnostics["reliability"]}
    assert pairs.pop("svd_lora_r4") == 0  # triplets, but no allocation: nothing to compare
    assert set(pairs.values()) == {1}  # 2 seeds: one pair per score
    assert main(["demo", "--output", str(out), "--tiny", "--seeds", "1,2", "num_epochs=1", "batch_size=32"]) == 0
    assert "0 run(s) trained" in capsys.readouterr().out  # a second call reuses every finished run


def test_table2_reads_squad_keys(tmp_path):
    for seed, (em, f1) in enumerate([(80.0, 88.0), (82.0, 90.0)], start=1):
        v1, v2 = {"exact_match": em, "f1": f1, "total": 10}, {"exact": em - 5, "f1": f1 - 5, "HasAns_f1": 1.0}
        _write_run(tmp_path, "squad", "gsnr_per_example", seed, {"dev": v1})
        _write_run(tmp_path, "squad_v2", "gsnr_per_example", seed, {"dev": v2})
    build_report(tmp_path, plot=False)
    cells = {c["column"]: c for c in json.loads((tmp_path / "report.json").read_text())["table2"]["cells"]}
    assert cells["SQuAD v1.1 EM"]["mean"] == 81.0 and cells["SQuAD v1.1 F1"]["mean"] == 89.0
    assert cells["SQuAD v2.0 EM"]["mean"] == 76.0 and cells["SQuAD v2.0 F1"]["paper"] == 88.97
    assert "table1" not in json.loads((tmp_path / "report.json").read_text())  # no GLUE task, no Table 1


def test_sweep_overrides_merge_into_the_files_options(tmp_path, monkeypatch):
    """``score_options.x=`` on the sweep command line adds to the sweep file's ``score_options``, not replaces it."""
    import adalora_scores.study.sweep as sweep_module

    spec = tmp_path / "grid.yaml"
    spec.write_text(
        yaml.safe_dump(
            {"grid": {"task": ["rte"], "score": ["gsnr"], "seed": [1]}, "set": {"score_options": {"beta": 0.8}}}
        )
    )
    seen = []
    monkeypatch.setattr(sweep_module, "run_status", lambda output, run: seen.append(run.config) or "pending")
    assert main(["sweep", str(spec), "--output", str(tmp_path / "out"), "--dry-run", "score_options.eps=1e-5"]) == 0
    assert seen[0].score_options == {"beta": 0.8, "eps": 1e-5}


def test_paired_tests_against_a_chosen_reference_score(tmp_path, capsys):
    """A sweep without `sensitivity` (e.g. on your own data) compares every row with ``--reference``."""
    values = {"fisher": (70.0, 72.0, 71.0), "taylor": (72.0, 75.0, 73.0)}  # differences 2, 3, 2: mean 2.333
    for score, per_seed in values.items():
        for seed, accuracy in enumerate(per_seed, start=1):
            _write_run(tmp_path, "mrpc", score, seed, {"dev": {"accuracy": accuracy, "f1": accuracy}})
    assert main(["report", str(tmp_path), "--no-plots", "--reference", "fisher"]) == 0
    report = (tmp_path / "report.md").read_text()
    assert "### Significance against `fisher`" in report and "mean Δ vs fisher" in report
    tests = json.loads((tmp_path / "report.json").read_text())["table1"]["significance"]
    accuracy = next(t for t in tests if t["column"] == "MRPC Acc")
    assert accuracy["score"] == "taylor" and accuracy["n"] == 3
    assert accuracy["mean_difference"] == pytest.approx(7 / 3)
    assert accuracy["p"] == pytest.approx(ttest_rel(values["taylor"], values["fisher"]).pvalue)
    capsys.readouterr()
    assert main(["report", str(tmp_path), "--no-plots", "--reference", "gsnr"]) == 2
    assert "no runs of that score or baseline here; the rows are fisher, taylor" in capsys.readouterr().err


def test_differences_equal_up_to_rounding_are_not_significant():
    """Two seeds whose differences are both −5/12 up to float rounding: undefined (n/a), not t = −inf, p = 0."""
    ours, reference = {1: 57.08333333333333, 2: 63.74999999999999}, {1: 57.5, 2: 64.16666666666667}
    assert (ours[1] - reference[1]) != (ours[2] - reference[2])  # really not bit-equal
    n, difference, t, p = paired_test(ours, reference)
    assert (n, t, p) == (2, None, None) and difference == pytest.approx(-5 / 12)
    n, difference, t, p = paired_test({1: 1.0, 2: 3.0}, {1: 0.0, 2: 0.0})
    assert t == pytest.approx(2.0) and p == pytest.approx(0.2951672353008665)
