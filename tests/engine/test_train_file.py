"""A train YAML is a whole run: ``task``, ``model``, ``data``, ``score`` in ``defaults:`` and the run folder as
``output:``; flags and ``key=value`` override the file; ``--print-config`` prints the resolved values as a train
YAML that ``--config`` reads back."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from adalora_scores.cli import main
from adalora_scores.config import TrainConfig
from adalora_scores.presets.files import preset_output
from adalora_scores.presets.overrides import resolve_config


def _printed(capsys, argv: list[str]) -> dict:
    assert main(["train", *argv, "--print-config"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("# The resolved configuration of one run")
    return yaml.safe_load(captured.out)


def test_one_yaml_file_is_a_whole_run_and_flags_override_it(glue_root, tiny_model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(
        yaml.safe_dump(
            {
                "kind": "train",
                "output": "runs/rte-fisher",
                "defaults": {
                    "task": "rte",
                    "model": str(tiny_model_dir),
                    "data": str(glue_root / "rte"),
                    "score": "fisher",
                    "seed": 3,
                    "num_epochs": 1,
                    "batch_size": 8,
                    "init_r": 4,
                    "target_r": 2,
                    "mask_interval": 1,
                    "max_seq_length": 32,
                    "eval_batch_size": 8,
                    "learning_rate": 5e-3,
                },
            }
        )
    )
    printed = _printed(capsys, ["--config", "run.yaml", "--score", "movement", "learning_rate=1e-2"])
    assert printed["output"] == "runs/rte-fisher"
    assert (printed["defaults"]["score"], printed["defaults"]["learning_rate"]) == ("movement", 1e-2)
    assert not (tmp_path / "runs").exists()  # printing trains nothing

    assert main(["train", "--config", "run.yaml", "--score", "movement", "learning_rate=1e-2"]) == 0
    run = tmp_path / "runs" / "rte-fisher"
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert (saved["task"], saved["score"], saved["seed"], saved["learning_rate"]) == ("rte", "movement", 3, 1e-2)
    assert {key: saved[key] for key in printed["defaults"]} == printed["defaults"]  # what was printed is what ran
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == metrics["total_steps"] == 3  # 24 examples / batch 8, 1 epoch


def test_print_config_reads_back_to_the_same_config(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = ["--config", "paper-glue", "--task", "rte", "--seed", "4", "score_options.beta=0.9", "tinit=0.2"]
    printed = _printed(capsys, argv)
    assert "output" not in printed and printed["kind"] == "train"
    expected = resolve_config("paper-glue", "rte", {"task": "rte", "seed": 4}, ["score_options.beta=0.9", "tinit=0.2"])
    assert printed["defaults"] == expected.to_dict()
    (tmp_path / "printed.yaml").write_text(yaml.safe_dump(printed))
    assert resolve_config("printed.yaml", None, {}, []) == expected
    assert expected.budget_warmup == 0.2 and expected.orth_reg_weight == 0.3  # the alias; paper-glue's RTE entry
    again = _printed(capsys, ["--config", "printed.yaml", "--output", "runs/x"])
    assert again["output"] == "runs/x" and again["defaults"] == printed["defaults"]


def test_the_task_of_the_file_chooses_its_task_entry(tmp_path):
    (tmp_path / "glue.yaml").write_text(
        "kind: train\noutput: runs/a\ndefaults: {task: rte, learning_rate: 1.0e-3}\n"
        "tasks:\n  rte: {learning_rate: 2.0e-3}\n  mrpc: {learning_rate: 3.0e-3}\n"
    )
    path = str(tmp_path / "glue.yaml")
    assert resolve_config(path, None, {}, []).learning_rate == 2e-3  # defaults' task
    assert resolve_config(path, "mrpc", {"task": "mrpc"}, []).learning_rate == 3e-3  # --task over the file
    assert resolve_config(path, None, {}, ["task=mrpc"]).learning_rate == 3e-3  # task=… over the file
    assert resolve_config(path, None, {}, ["task=mrpc", "learning_rate=4e-3"]).learning_rate == 4e-3
    assert preset_output(path) == "runs/a"
    (tmp_path / "bad.yaml").write_text("defaults: {task: rte}\ntasks:\n  rte: {task: mrpc}\n")
    with pytest.raises(ValueError, match=r"tasks.rte sets task; leave it out"):
        resolve_config(str(tmp_path / "bad.yaml"), None, {}, [])
    (tmp_path / "no-output.yaml").write_text("output: [runs]\ndefaults: {task: rte}\n")
    with pytest.raises(ValueError, match=r"output must be the path of a run folder, e.g. output: runs/mrpc"):
        preset_output(str(tmp_path / "no-output.yaml"))


@pytest.mark.parametrize(
    "file,argv,message",
    [
        ("defaults: {task: rte}\n", [], "no run folder: pass --output DIR, or set output: DIR in the --config file"),
        ("output: runs/a\n", [], "task is required: pass --task NAME .*or set task: NAME in the defaults:"),
        ("output: runs/a\n", ["--print-config"], "task is required"),
        ("output: runs/a\ndefaults: {task: rte}\nsteps: 3\n", [], r"unknown section\(s\) \['steps'\]"),
    ],
)
def test_a_file_that_is_not_a_whole_run_says_what_is_missing(file, argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text(file)
    assert main(["train", "--config", "run.yaml", *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith("adalora-scores train: error: ") and re.search(message, error), error
    assert not (tmp_path / "runs").exists()


def test_print_config_needs_no_output_and_a_missing_task_is_refused_without_a_file(capsys):
    printed = _printed(capsys, ["--task", "mrpc"])
    assert printed["defaults"] == TrainConfig(task="mrpc").to_dict()
    assert main(["train", "--output", "runs/x"]) == 2
    assert "task is required" in capsys.readouterr().err
