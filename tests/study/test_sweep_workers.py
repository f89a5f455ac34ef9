"""Sweeps that never lose or double-train a run: every run reported under its own row (``grid.json``, the manifest
as a union), conflicting runs shown as an error, run names that state the run's values, claims between parallel
workers (skip, takeover, resume) and run files readable under the process umask."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from adalora_scores.runs.files import atomic_write, write_json
from adalora_scores.study.claims import machine_id, read_claim, stale_reason, try_claim
from adalora_scores.study.grid import SweepSpec
from adalora_scores.study.report import build_report
from adalora_scores.study.results import RunRecord, Study, collect
from adalora_scores.study.sweep import read_manifest, run_sweep, write_manifest


def _accuracy(config) -> float:
    """A fake run's dev accuracy, distinct per grid value: 50 + seed + init_r / 4 + 10 × orth_reg_weight."""
    return 50.0 + config.seed + config.init_r / 4 + 10 * config.orth_reg_weight


def _fake_train():
    """Writes a run folder like ``train`` (config, then metrics last); records each call and how it started."""
    calls = []

    def train(config, folder, overwrite=False, resume=False):
        folder = Path(folder)
        calls.append((folder.name, "resume" if resume else "fresh"))
        (folder / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
        metrics = {
            "main_metric": "accuracy",
            "eval": {"dev": {"accuracy": _accuracy(config)}},
            "resumed_from_step": 40 if resume else None,
        }
        (folder / "metrics.json").write_text(json.dumps(metrics))

    return train, calls


def _quiet(*_):
    return None


# ---------------------------------------------------------------- every run under its own row
def test_two_sweeps_with_different_grids_keep_every_run(tmp_path):
    """A second sweep varying another key into one folder: every run of both keeps its row and values."""
    base = {"task": ["rte"], "score": ["sensitivity", "fisher"], "seed": [1, 2]}
    first = SweepSpec({**base, "init_r": [12, 20]}, source="first.yaml")
    second = SweepSpec({**base, "orth_reg_weight": [0.0, 0.3]}, source="second.yaml")
    train, calls = _fake_train()
    for spec in (first, second):
        runs = spec.runs()
        write_manifest(tmp_path, spec, runs)
        assert run_sweep(tmp_path, runs, train_fn=train, echo=_quiet).ran == [r.name for r in runs]
    assert len(calls) == 16
    manifest = read_manifest(tmp_path)
    assert len(manifest["runs"]) == 16 and [s["source"] for s in manifest["specs"]] == ["first.yaml", "second.yaml"]
    write_manifest(tmp_path, first, first.runs())  # the same sweep again: no second entry
    assert len(read_manifest(tmp_path)["specs"]) == 2
    grid = json.loads((tmp_path / "rte__fisher__init_r=20__seed2" / "grid.json").read_text())
    assert grid == {
        "row": "fisher",
        "grid_values": {"task": "rte", "score": "fisher", "seed": 2, "init_r": 20},
        "source": "first.yaml",
        "name": "rte__fisher__init_r=20__seed2",
    }

    build_report(tmp_path, plot=False)
    cells = {
        (c["score"], c["variant"]): c for c in json.loads((tmp_path / "report.json").read_text())["table1"]["cells"]
    }
    # by hand: init_r=12 (orth_reg_weight 0.1 by default): 50 + {1, 2} + 3 + 1 → mean 55.5; init_r=20: 57.5;
    # orth_reg_weight=0.0 (init_r 16 by default): 50 + {1, 2} + 4 + 0 → 55.5; orth_reg_weight=0.3: 58.5
    expected = {"init_r=12": 55.5, "init_r=20": 57.5, "orth_reg_weight=0.0": 55.5, "orth_reg_weight=0.3": 58.5}
    assert set(cells) == {(score, variant) for score in ("sensitivity", "fisher") for variant in expected}
    for (score, variant), cell in cells.items():
        assert cell["n"] == 2 and cell["mean"] == pytest.approx(expected[variant]), (score, variant)
    report = (tmp_path / "report.md").read_text()
    assert "Missing runs" not in report and "Error" not in report


def test_grid_json_outranks_the_manifest(tmp_path):
    """A manifest that lost a run (written by an older version that replaced it) no longer decides its row."""
    spec = SweepSpec({"task": ["rte"], "score": ["fisher"], "seed": [1], "init_r": [20]})
    runs = spec.runs()
    run_sweep(tmp_path, runs, train_fn=_fake_train()[0], echo=_quiet)
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump({"source": "old.yaml", "grid": {}, "runs": {}}))
    (record,) = collect(tmp_path).records
    assert record.row == ("fisher", "init_r=20") and record.grid_values["init_r"] == 20
    (tmp_path / runs[0].name / "grid.json").unlink()  # an old folder: task, score and seed from its config
    assert collect(tmp_path).records[0].row == ("fisher", "")
    assert read_manifest(tmp_path)["specs"][0]["source"] == "old.yaml"  # the old one-spec layout reads as a list


def _hand_run(root: Path, name: str, grid_values: dict, accuracy: float) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(
        yaml.safe_dump({"task": grid_values["task"], "score": "fisher", "seed": grid_values["seed"]})
    )
    (folder / "grid.json").write_text(json.dumps({"row": grid_values["score"], "grid_values": grid_values}))
    (folder / "metrics.json").write_text(
        json.dumps({"main_metric": "accuracy", "eval": {"dev": {"accuracy": accuracy}}})
    )


def test_two_runs_in_one_cell_are_an_error_not_one_of_them(tmp_path):
    values = {"task": "rte", "score": "fisher", "seed": 1, "init_r": 20}
    _hand_run(tmp_path, "a/rte__fisher__init_r=20__seed1", values, 60.0)
    _hand_run(tmp_path, "b/rte__fisher__init_r=20__seed1", values, 70.0)
    _hand_run(tmp_path, "rte__fisher__init_r=20__seed2", {**values, "seed": 2}, 64.0)
    study = collect(tmp_path)
    assert [r.name for r in study.records] == ["rte__fisher__init_r=20__seed2"]
    assert [sorted(r.name for r in group) for group in study.conflicts] == [
        ["a/rte__fisher__init_r=20__seed1", "b/rte__fisher__init_r=20__seed1"]
    ]
    build_report(tmp_path, plot=False)
    report = (tmp_path / "report.md").read_text()
    assert "## ⚠ Error: runs that claim the same cell" in report
    assert "- `fisher` [init_r=20] on rte, seed 1: `a/rte__fisher__init_r=20__seed1`, `b/rte__fisher__init_r" in report
    (cell,) = json.loads((tmp_path / "report.json").read_text())["table1"]["cells"]
    assert cell["n"] == 1 and cell["mean"] == 64.0  # neither 60 nor 70 is counted
    conflicts = json.loads((tmp_path / "report.json").read_text())["conflicts"]
    assert conflicts == [["a/rte__fisher__init_r=20__seed1", "b/rte__fisher__init_r=20__seed1"]]
    # a Study built by hand with two records of one seed refuses to pick one
    twins = [
        RunRecord(n, tmp_path, "rte", "fisher", 1, "", {"eval": {"dev": {"accuracy": v}}})
        for n, v in (("x", 60.0), ("y", 70.0))
    ]
    with pytest.raises(ValueError, match="runs x and y are both seed 1 of fisher"):
        Study(twins, None, [], []).values(("fisher", ""), "rte", "dev", "accuracy")


# ---------------------------------------------------------------- run names
def test_a_baselines_fixed_setting_of_a_grid_key_is_in_its_run_names():
    spec = SweepSpec(
        {"task": ["rte"], "score": ["sensitivity"], "seed": [1], "lora_alpha": [16, 32]},
        baselines={
            "lora_r8": {"method": "lora", "target_r": 8, "lora_alpha": 64},
            "lora_r4": {"method": "lora", "target_r": 4, "lora_alpha": [8, 16]},
        },
    )
    named = {run.name: run.config.lora_alpha for run in spec.runs()}
    assert named == {
        "rte__sensitivity__lora_alpha=16__seed1": 16,
        "rte__sensitivity__lora_alpha=32__seed1": 32,
        "rte__lora_r8__lora_alpha=64__seed1": 64,  # was two runs, lora_alpha=16 and =32, both training with 64
        "rte__lora_r4__lora_alpha=8__seed1": 8,
        "rte__lora_r4__lora_alpha=16__seed1": 16,
    }
    with pytest.raises(ValueError, match="two runs would share the name rte__sensitivity__model=a-b__seed1"):
        SweepSpec({"task": ["rte"], "score": ["sensitivity"], "seed": [1], "model": ["a b", "a-b"]}).runs()


# ---------------------------------------------------------------- claims
def _claim_of(folder: Path, host: str, pid: int, age: float, machine: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    now = time.time()
    claim = {
        "host": host,
        "pid": pid,
        "machine": machine,
        "started": now - age,
        "heartbeat": now - age,
        "token": f"t{pid}",
    }
    (folder / "claim.json").write_text(json.dumps(claim))


def test_a_fresh_claim_is_skipped_and_a_stale_one_taken_over_with_its_checkpoint(tmp_path):
    runs = SweepSpec({"task": ["rte"], "score": ["fisher", "gsnr", "movement"], "seed": [1]}).runs()
    fresh, stale, free = (tmp_path / run.name for run in runs)
    _claim_of(fresh, "elsewhere", 4242, age=30)
    _claim_of(stale, "elsewhere", 4343, age=1000)
    (stale / "config.yaml").write_text(yaml.safe_dump(runs[1].config.to_dict()))
    (stale / "checkpoint.pt").write_bytes(b"a checkpoint")
    train, calls = _fake_train()
    printed = []
    result = run_sweep(tmp_path, runs, train_fn=train, echo=printed.append, claim_timeout=600)
    assert calls == [(stale.name, "resume"), (free.name, "fresh")]
    assert result.held == [fresh.name] and result.taken_over == [stale.name] and result.ran == [stale.name, free.name]
    assert any("claimed by elsewhere:4242, heartbeat 30 s ago; left to it" in line for line in printed)
    assert read_claim(fresh).token == "t4242"  # the live claim is untouched
    assert not (stale / "claim.json").exists() and not (free / "claim.json").exists()  # released when done
    (takeover,) = [json.loads(line) for line in (stale / "takeovers.jsonl").read_text().splitlines()]
    assert takeover["previous"]["host"] == "elsewhere" and takeover["previous"]["pid"] == 4343
    assert takeover["reason"].startswith("its heartbeat is 100") and takeover["resumed_from_checkpoint"] is True
    assert takeover["taken_by"] == {"host": socket.gethostname(), "pid": os.getpid()}
    build_report(tmp_path, plot=False)
    report = (tmp_path / "report.md").read_text()
    assert "## Runs taken over from a stopped worker" in report
    assert f"- `{stale.name}`: claim of elsewhere:4343 (its heartbeat is 100" in report
    assert "resumed from its checkpoint at step 40" in report


def test_a_stale_claim_being_taken_over_by_another_worker_is_left_to_it(tmp_path):
    folder = tmp_path / "run"
    _claim_of(folder, "elsewhere", 4343, age=1000)
    (folder / ".claim.takeover-t4343").touch()  # another taker holds this claim's takeover
    attempt = try_claim(folder, timeout=600)
    assert attempt.claim is None and attempt.holder is None and read_claim(folder).token == "t4343"
    (folder / ".claim.takeover-t4343").unlink()
    attempt = try_claim(folder, timeout=600)
    assert attempt.taken_over.token == "t4343" and read_claim(folder).token == attempt.claim.info.token
    assert not (folder / ".claim.takeover-t4343").exists()
    attempt.claim.release()
    assert attempt.claim.lost is False and not (folder / "claim.json").exists()


def test_claims_are_exclusive_beat_and_notice_a_takeover(tmp_path):
    folder = tmp_path / "run"
    first = try_claim(folder, timeout=600, heartbeat_every=0.05)
    assert first.claim is not None and first.taken_over is None
    second = try_claim(folder, timeout=600)
    assert second.claim is None and second.holder.token == first.claim.info.token  # O_EXCL: one holder
    started = read_claim(folder).heartbeat
    deadline = time.time() + 30
    while read_claim(folder).heartbeat == started and time.time() < deadline:
        time.sleep(0.05)
    assert read_claim(folder).heartbeat > started and read_claim(folder).started == first.claim.info.started
    atomic_write(folder / "claim.json", json.dumps({"token": "someone else", "heartbeat": time.time()}))
    first.claim.release()
    assert first.claim.lost and read_claim(folder).token == "someone else"  # not removed: not this claim any more


def test_a_claim_whose_process_is_gone_is_stale_at_once(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(ended.stdout)
    _claim_of(tmp_path, socket.gethostname(), pid, age=0, machine=machine_id())
    if machine_id() is None:
        pytest.skip("no machine id (not Linux): a claim is judged by its heartbeat alone")
    reason = stale_reason(read_claim(tmp_path), timeout=600)
    assert reason == f"its process {pid} on this host is gone"
    _claim_of(tmp_path, "another-host", pid, age=0, machine=machine_id())  # elsewhere: the pid says nothing
    assert stale_reason(read_claim(tmp_path), timeout=600) is None
    other_container = machine_id().split()[0] + " pid:[1]"  # same boot, another process-id namespace
    _claim_of(tmp_path, socket.gethostname(), pid, age=0, machine=other_container)
    assert stale_reason(read_claim(tmp_path), timeout=600) is None
    _claim_of(tmp_path, socket.gethostname(), os.getpid(), age=0, machine=machine_id())
    assert stale_reason(read_claim(tmp_path), timeout=600) is None


# ---------------------------------------------------------------- file permissions
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_run_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write(tmp_path / "metrics.json", "{}")
        write_json(tmp_path / "log.jsonl", [{"step": 1}])
        with try_claim(tmp_path / "run", timeout=600).claim:
            claim_mode = stat.S_IMODE((tmp_path / "run" / "claim.json").stat().st_mode)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == mode
    assert stat.S_IMODE((tmp_path / "log.jsonl").stat().st_mode) == mode
    assert claim_mode == mode


# ---------------------------------------------------------------- two real workers on one folder
def test_two_sweep_processes_on_one_folder_train_each_run_once(tmp_path, tiny_model_dir):
    """Two ``adalora-scores sweep`` processes started together on one folder (a requeued array job, or two people):
    every run is trained by exactly one of them, the other leaves it (claimed) or finds it done."""
    from adalora_scores.tasks.contrast import write_contrast_task

    data = write_contrast_task(tmp_path / "data", train=24, dev=8)
    spec = tmp_path / "sweep.yaml"
    scores = ["fisher", "gsnr", "movement", "sensitivity"]
    spec.write_text(
        yaml.safe_dump(
            {
                "grid": {"task": ["sst2"], "score": scores, "seed": [1]},
                "set": {
                    "model": str(tiny_model_dir),
                    "num_epochs": 1,
                    "batch_size": 4,
                    "max_seq_length": 24,
                    "init_r": 4,
                    "target_r": 2,
                    "mask_interval": 1,
                },
                "data": {"sst2": str(data)},
            }
        )
    )
    out = tmp_path / "out"
    command = [sys.executable, "-m", "adalora_scores.cli", "sweep", str(spec), "--output", str(out)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    workers = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    printed = [worker.communicate(timeout=300)[0] for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], printed
    names = [f"sst2__{score}__seed1" for score in scores]
    started = {name: sum(text.count(f"] {name} (") for text in printed) for name in names}
    assert started == dict.fromkeys(names, 1), printed  # each run began training in exactly one worker
    trained = [int(text.split("sweep: ")[1].split(" trained")[0]) for text in printed]
    assert sum(trained) == len(names), printed
    for name in names:
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert metrics["steps"] == 6 and metrics["resumed_from_step"] is None  # 24 examples / 4 per batch
        assert len((out / name / "log.jsonl").read_text().splitlines()) == 6  # one step log, not two interleaved
        assert not (out / name / "claim.json").exists() and not (out / name / "takeovers.jsonl").exists()


def test_dry_run_names_the_holder_and_the_timeout_must_be_positive(tmp_path, capsys):
    from adalora_scores.cli import main

    spec = tmp_path / "grid.yaml"
    spec.write_text(yaml.safe_dump({"grid": {"task": ["rte"], "score": ["fisher", "gsnr"], "seed": [1]}}))
    out = tmp_path / "out"
    _claim_of(out / "rte__gsnr__seed1", "elsewhere", 4242, age=30)
    assert main(["sweep", str(spec), "--output", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "pending    rte__fisher__seed1\n" in printed
    assert "pending    rte__gsnr__seed1 (claimed by elsewhere:4242, heartbeat 30 s ago)" in printed
    assert main(["sweep", str(spec), "--output", str(out), "--claim-timeout", "0"]) == 2
    assert "--claim-timeout 0: give a positive number of seconds" in capsys.readouterr().err


def test_a_multi_process_launch_trains_every_run_together_without_claims(tmp_path, monkeypatch):
    """Under ``accelerate launch`` every process runs the sweep and must train every run (a collective), so
    processes of one launch must not skip each other's claims."""
    runs = SweepSpec({"task": ["rte"], "score": ["fisher"], "seed": [1]}).runs()
    _claim_of(tmp_path / runs[0].name, "elsewhere", 4242, age=30)
    monkeypatch.setenv("WORLD_SIZE", "2")
    train, calls = _fake_train()
    assert run_sweep(tmp_path, runs, train_fn=train, echo=_quiet).ran == [runs[0].name]
    assert calls == [(runs[0].name, "fresh")]
