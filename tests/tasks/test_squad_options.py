"""SQuAD's own settings are its ``task_options`` (``SquadOptions``); the old top-level names (0.3's ``TrainConfig``
fields) stay aliases everywhere a config is given, and run folders that hold them still count as the same run."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
import yaml

from adalora_scores.cli import main
from adalora_scores.config import TASK_OPTION_ALIASES, TrainConfig
from adalora_scores.presets.overrides import resolve_config
from adalora_scores.runs.files import CONFIG_FILE, METRICS_FILE, config_changes, saved_train_values, write_config
from adalora_scores.study.grid import Run, SweepSpec
from adalora_scores.study.sweep import run_status
from adalora_scores.tasks import check_run_config, configure_run
from adalora_scores.tasks.squad import SquadOptions

FROZEN = Path(__file__).parents[1] / "fixtures" / "run-folders-v1"


def _squad(overrides: list[str], preset: str | None = None, task: str = "squad") -> TrainConfig:
    return resolve_config(preset, task, {"task": task}, overrides)


def test_the_aliases_have_the_defaults_of_the_options():
    assert TASK_OPTION_ALIASES == dataclasses.asdict(SquadOptions())


def test_an_old_name_is_the_task_option():
    by_old_name = _squad(["doc_stride=64", "max_answer_length=8", "n_best_size=5", "null_score_diff_threshold=-1.5"])
    by_option = _squad(
        [
            "task_options.doc_stride=64",
            "task_options.max_answer_length=8",
            "task_options.n_best_size=5",
            "task_options.null_score_diff_threshold=-1.5",
        ]
    )
    assert by_old_name == by_option
    assert by_old_name.task_options == {
        "doc_stride": 64,
        "max_answer_length": 8,
        "n_best_size": 5,
        "null_score_diff_threshold": -1.5,
    }
    assert configure_run(by_old_name).options == SquadOptions(64, 8, 5, -1.5)
    flags = resolve_config(None, "squad", {"task": "squad", "doc_stride": 32}, [])
    assert flags.task_options == {"doc_stride": 32}


def test_an_old_name_at_its_default_changes_nothing():
    assert _squad(["doc_stride=128", "n_best_size=20"]).task_options == {}
    glue = resolve_config(None, "mrpc", {"task": "mrpc"}, ["doc_stride=128"])  # an old preset's value, harmless
    assert glue.task_options == {}
    check_run_config(glue)
    with pytest.raises(ValueError, match="task mrpc takes no task_options .got doc_stride."):
        check_run_config(resolve_config(None, "mrpc", {"task": "mrpc"}, ["doc_stride=64"]))


def test_old_names_in_a_preset_keep_their_order(tmp_path):
    """An old name is task_options.NAME of its level (preset defaults < task entry < given values < overrides),
    set name by name over the levels below, as the top-level field it was."""
    preset = tmp_path / "old-squad.yaml"
    entries = {"squad": {}, "squad_v2": {"null_score_diff_threshold": -1.0}}
    preset.write_text(yaml.safe_dump({"kind": "train", "defaults": {"doc_stride": 64}, "tasks": entries}))
    assert _squad([], str(preset), "squad_v2").task_options == {"doc_stride": 64, "null_score_diff_threshold": -1.0}
    assert _squad(["doc_stride=32"], str(preset)).task_options == {"doc_stride": 32}  # overrides win, as before
    assert _squad(["task_options.doc_stride=32"], str(preset)).task_options == {"doc_stride": 32}
    assert _squad(["doc_stride=128"], str(preset)).task_options == {}  # back to the default
    new_form = _squad(["doc_stride=64", "null_score_diff_threshold=0.5"], "paper-squad", "squad_v2")
    assert configure_run(new_form).options == SquadOptions(doc_stride=64, null_score_diff_threshold=0.5)
    with pytest.raises(
        ValueError,
        match="the key=value overrides sets doc_stride .the old name of "
        "task_options.doc_stride. to 64 and task_options.doc_stride to 32; keep "
        "task_options.doc_stride",
    ):
        _squad(["doc_stride=64", "task_options.doc_stride=32"])


@pytest.mark.parametrize("preset", ["paper-squad", "adalora-squad"])
def test_the_bundled_presets_use_the_new_form(preset):
    document = yaml.safe_load(Path(f"presets/train/{preset}.yaml").read_text())
    assert not set(TASK_OPTION_ALIASES) & set(document["defaults"])
    assert configure_run(_squad([], preset, "squad_v2")).options == SquadOptions()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["doc_stride=384"], r"task_options.doc_stride \(384\) must be in \[0, max_seq_length=384\)"),
        (["max_seq_length=64", "task_options.doc_stride=64"], r"doc_stride \(64\) must be in \[0, max_seq_length=64"),
        (["n_best_size=0"], "task_options.n_best_size must be a positive integer, got 0"),
        (["task_options.max_answer_length=true"], "task_options.max_answer_length must be a positive integer"),
        (["task_options.doc_stride=-1"], "task_options.doc_stride must be a whole number >= 0, got -1"),
        (["task_options.null_score_diff_threshold=high"], "null_score_diff_threshold must be a number"),
        (["task_options.n_best=3"], "unknown task option 'n_best' for task squad. Did you mean 'n_best_size'"),
    ],
)
def test_bad_options_fail_before_any_work(overrides, message, tmp_path, capsys):
    with pytest.raises(ValueError, match=message):
        check_run_config(_squad(overrides))
    out = tmp_path / "run"
    command = ["train", "--task", "squad", "--data", str(tmp_path / "absent"), "--output", str(out)]
    assert main([*command, *overrides]) == 2
    error = capsys.readouterr().err
    assert re.search(message, error) and error.count("error:") == 1 and not out.exists()


def test_a_sweep_grid_may_use_an_old_name():
    spec = SweepSpec({"task": ["squad"], "score": ["fisher"], "seed": [1], "doc_stride": [64, 96]})
    runs = spec.runs()
    assert [run.name for run in runs] == ["squad__fisher__doc_stride=64__seed1", "squad__fisher__doc_stride=96__seed1"]
    assert [run.config.task_options for run in runs] == [{"doc_stride": 64}, {"doc_stride": 96}]
    with pytest.raises(ValueError, match="run squad__fisher__seed1: task_options.doc_stride .512. must be in"):
        SweepSpec({"task": ["squad"], "score": ["fisher"], "seed": [1]}, fixed={"doc_stride": 512}).runs()


# -- run folders written before the move ----------------------------------------------------------------------------
def _format_2(config: TrainConfig, **squad: float) -> dict:
    """The ``config.yaml`` 0.3 wrote for ``config``: SQuAD's settings at the top level, no task options."""
    values = {**config.to_dict(), "task_options": {}, **TASK_OPTION_ALIASES, **squad}
    return {"format_version": 2, **values, "total_steps": 10, "selection_examples": 0}


def _finished(folder: Path, saved: dict) -> Path:
    folder.mkdir(parents=True)
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(saved, sort_keys=False))
    (folder / METRICS_FILE).write_text(json.dumps({"eval": {}}))
    return folder


def test_an_old_squad_run_is_the_same_run(tmp_path):
    config = _squad([], "paper-squad")  # the bundled preset, now with task_options
    saved = _format_2(config)
    assert saved_train_values(saved)["task_options"] == {}
    assert config_changes(saved, config) == []
    grid = {"task": "squad", "score": "sensitivity", "seed": 1}
    assert run_status(_finished(tmp_path / "runs" / "a", saved).parent, Run("a", config, grid)) == "done"
    assert run_status(tmp_path / "runs", Run("a", _squad(["doc_stride=64"], "paper-squad"), grid)) == "changed"
    strided = _format_2(config, doc_stride=64)
    assert saved_train_values(strided)["task_options"] == {"doc_stride": 64}
    assert config_changes(strided, _squad(["doc_stride=64"], "paper-squad")) == []
    assert [name for name, *_ in config_changes(strided, config)] == ["task_options"]


def test_an_old_squad_run_resumes_with_its_config(tmp_path):
    from adalora_scores.engine.train import _check_resumable

    config = _squad(["doc_stride=64"])
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(_format_2(config, doc_stride=64), sort_keys=False))
    _check_resumable(folder, config)  # no change
    with pytest.raises(ValueError, match="--resume with a changed config"):
        _check_resumable(folder, _squad([]))


def test_an_old_glue_run_still_evaluates_without_task_options():
    """The frozen 0.2 folder holds doc_stride and the other SQuAD fields at their defaults: they vanish."""
    from adalora_scores.engine.finished_run import _evaluation_config

    config = _evaluation_config(FROZEN / "finished", [])
    assert config.task == "sst2" and config.task_options == {}
    configure_run(config)


def test_new_config_files_have_the_options_in_task_options(tmp_path):
    config = _squad(["doc_stride=64"])
    write_config(tmp_path, config.to_dict())
    saved = yaml.safe_load((tmp_path / CONFIG_FILE).read_text())
    assert saved["format_version"] == 3 and not set(TASK_OPTION_ALIASES) & set(saved)
    assert saved["task_options"] == {"doc_stride": 64} and config_changes(saved, config) == []
