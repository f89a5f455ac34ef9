"""``adalora-scores evaluate RUN``: a finished run's adapter, reloaded with stock PEFT, gives the metrics the run
recorded; evaluation settings may change (generation on), training settings may not, and nothing is overwritten."""

from __future__ import annotations

import json

import pytest
from test_causal_lm import TINY, decoders  # noqa: F401  (the module-scoped fixture)

from adalora_scores.cli import main

SMALL = [
    "init_r=4",
    "target_r=2",
    "mask_interval=1",
    "max_seq_length=32",
    "learning_rate=5e-3",
    "num_epochs=1",
    "batch_size=4",
    "budget_warmup=0.1",
    "budget_final=0.2",
]


def test_a_glue_run_evaluates_to_its_recorded_metrics(glue_root, tiny_model_dir, tmp_path):
    run = tmp_path / "run"
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
                str(run),
                "selection_fraction=0.25",
                *SMALL,
            ]
        )
        == 0
    )
    assert main(["evaluate", str(run)]) == 0
    recorded = json.loads((run / "metrics.json").read_text())["eval"]
    again = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert set(again["eval"]) == {"dev", "selection"}
    for split, values in recorded.items():
        for name, value in values.items():
            assert again["eval"][split][name] == pytest.approx(value, rel=1e-6, abs=1e-9), (split, name)


def test_a_causal_run_evaluates_again_with_generation(decoders, tmp_path, capsys):  # noqa: F811
    root, models = decoders
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "causal_lm",
                "--model",
                str(models["llama"]),
                "--data",
                str(root / "data"),
                "--output",
                str(run),
                *TINY,
            ]
        )
        == 0
    )
    assert not (run / "predictions.jsonl").exists()
    out = tmp_path / "with-generation"
    assert (
        main(
            [
                "evaluate",
                str(run),
                "--output",
                str(out),
                "task_options.generate=true",
                "task_options.max_new_tokens=4",
                "eval_batch_size=3",
            ]
        )
        == 0
    )
    recorded = json.loads((run / "metrics.json").read_text())["eval"]["dev"]
    again = json.loads((out / "metrics.json").read_text())
    assert again["eval"]["dev"]["loss"] == pytest.approx(recorded["loss"], rel=1e-6)
    assert again["changed"] == {"task_options": {"generate": True, "max_new_tokens": 4}, "eval_batch_size": 3}
    predictions = (out / "predictions.jsonl").read_text().splitlines()
    assert len(predictions) == 8 and "exact_match" in again["eval"]["dev"]
    capsys.readouterr()
    assert main(["evaluate", str(run), "--output", str(out)]) == 2  # nothing overwritten without --overwrite
    assert "--overwrite" in capsys.readouterr().err and len((out / "predictions.jsonl").read_text().splitlines()) == 8
    assert main(["evaluate", str(run), "learning_rate=1"]) == 2
    assert "evaluate cannot change learning_rate" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing")]) == 2
    assert "not a finished run" in capsys.readouterr().err
