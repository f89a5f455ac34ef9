"""``report_to=tensorboard``: the event file holds the run's loss, learning rate, budget, kept ranks and churn."""

from __future__ import annotations

import json

import pytest

from adalora_scores.cli import main

SMALL = ["num_epochs=2", "batch_size=4", "init_r=4", "target_r=2", "mask_interval=1", "max_seq_length=32"]


def test_tensorboard_event_file_reads_back_offline(glue_root, tiny_model_dir, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

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
                "report_to=tensorboard",
                *SMALL,
            ]
        )
        == 0
    )
    files = list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert files
    events = EventAccumulator(str(files[0].parent))
    events.Reload()
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    losses = events.Scalars("train/loss")
    assert [e.step for e in losses] == [r["step"] for r in log] == list(range(1, 13))
    assert [e.value for e in losses] == pytest.approx([r["loss"] for r in log], rel=1e-6)
    assert [e.value for e in events.Scalars("train/budget")] == [r["budget"] for r in log]
    assert [e.value for e in events.Scalars("train/learning_rate")] == pytest.approx([r["lr"] for r in log])
    allocations = [json.loads(line) for line in (out / "allocations.jsonl").read_text().splitlines()][1:]
    kept_q = events.Scalars("kept_rank/q")
    assert [e.step for e in kept_q] == [a["step"] for a in allocations]
    final = json.loads((out / "rank_pattern.json").read_text())
    assert kept_q[-1].value == sum(v["rank"] for k, v in final.items() if ".query." in k)
    churn = events.Scalars("allocation/churn")
    assert [e.step for e in churn] == [a["step"] for a in allocations[1:]] and all(0 <= e.value <= 1 for e in churn)


def test_a_missing_tracker_package_is_a_clear_error(glue_root, tiny_model_dir, tmp_path, capsys, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
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
                "report_to=wandb",
                *SMALL,
            ]
        )
        == 2
    )
    assert "pip install wandb" in capsys.readouterr().err and not out.exists()
