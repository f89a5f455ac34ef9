"""sweep --launcher: the settings (command line over the sweep file's launcher: section), the GPU split of the
process launcher, Slurm's time limits and sbatch script (shown by --dry-run), --status, names checked before any run,
the missing-extra message, and the process launcher on a tiny grid: an injected crash (a plugin score that SIGKILLs
its own process) leaves the other run finished and bit-identical to the in-process sweep, the sweep exits 1 naming
the crashed run, and a second sweep resumes it from its checkpoint, bit-identical too."""

from __future__ import annotations

import argparse
import json
import sys

import pytest
import yaml
from _launcher_grid import RUNS, assert_same_runs, finished, forget_plugins, reference_sweep, write_sweep

from adalora_scores.cli import main
from adalora_scores.study.launchers import DEFAULTS, launcher_settings
from adalora_scores.study.launchers.process import device_groups

GRID = {"grid": {"task": ["rte"], "score": ["sensitivity", "fisher"], "seed": [1, 2]}}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir):
    return reference_sweep(tmp_path_factory.mktemp("reference"), tiny_model_dir)


@pytest.fixture(autouse=True)
def no_plugin_left():
    """The fault score a test's sweep registers is gone after it."""
    yield
    forget_plugins()


def test_device_groups_divide_the_gpus_among_the_jobs():
    assert device_groups(["0", "1", "2", "3"], 2) == [["0", "1"], ["2", "3"]]
    assert device_groups(["0", "1", "2", "3", "4"], 2) == [["0", "1", "2"], ["3", "4"]]
    assert device_groups(["4", "6"], 4) == [["4"], ["6"], ["4"], ["6"]]  # more jobs than GPUs: shared in turn
    assert device_groups([], 3) == [[], [], []]
    with pytest.raises(ValueError, match="at least 1"):
        device_groups(["0"], 0)


def test_slurm_time_limits():
    from adalora_scores.study.launchers.slurm import parse_minutes

    assert [parse_minutes(t) for t in ("240", "4:00:00", "90:30", "1-12:00:00", "0:00:01")] == [240, 240, 91, 2160, 1]
    with pytest.raises(ValueError, match="4:00:00"):
        parse_minutes("four hours")


def test_settings_come_from_the_command_line_over_the_sweep_file():
    section = {"name": "slurm", "slurm_partition": "gpu", "slurm_options": {"account": "lab"}, "jobs": 2}
    args = argparse.Namespace(launcher=None, slurm_time="1:00:00", slurm_option=["qos=high"], jobs=None)
    settings = launcher_settings(section, args)
    assert settings["name"] == "slurm" and settings["jobs"] == 2 and settings["slurm_partition"] == "gpu"
    assert settings["slurm_time"] == "1:00:00" and settings["slurm_options"] == {"account": "lab", "qos": "high"}
    assert settings["ray_max_retries"] == DEFAULTS["ray_max_retries"]
    assert launcher_settings(section, argparse.Namespace(launcher="process"))["name"] == "process"
    with pytest.raises(ValueError, match=r"unknown launcher setting\(s\) \['partition'\]"):
        launcher_settings({"partition": "gpu"}, args)
    with pytest.raises(ValueError, match="unknown launcher 'kubernetes'"):
        launcher_settings({"name": "kubernetes"}, argparse.Namespace())


def test_dry_run_shows_the_sbatch_script_and_submits_nothing(tmp_path, capsys):
    pytest.importorskip("submitit")
    spec = tmp_path / "grid.yaml"
    spec.write_text(yaml.safe_dump({**GRID, "launcher": {"slurm_partition": "gpu", "slurm_options": {"qos": "x"}}}))
    out = tmp_path / "out"
    arguments = [
        "sweep",
        str(spec),
        "--output",
        str(out),
        "--dry-run",
        "--launcher",
        "slurm",
        "--slurm-time",
        "2:00:00",
    ]
    assert (
        main([*arguments, "--slurm-cpus-per-run", "8", "--slurm-option", "account=lab", "--slurm-gpus-per-run", "2"])
        == 0
    )
    printed = capsys.readouterr().out
    assert "pending    rte__fisher__seed2" in printed and "a job array of 4 task(s)" in printed
    for line in (
        "--partition=gpu",
        "--time=120",
        "--cpus-per-task=8",
        "--gpus-per-node=2",
        "--qos=x",
        "--account=lab",
    ):
        assert f"#SBATCH {line}\n" in printed, line
    assert "#SBATCH --array=0-3%" in printed and "submitit.core._submit" in printed and not out.exists()


def test_process_dry_run_and_status(tmp_path, capsys):
    spec = tmp_path / "grid.yaml"
    spec.write_text(yaml.safe_dump(GRID))
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--output", str(out), "--dry-run", "--launcher", "process", "--jobs", "3"]) == 0
    assert "process: 4 run(s), 3 at a time" in capsys.readouterr().out
    (out / "rte__fisher__seed1").mkdir(parents=True)
    (out / "rte__fisher__seed1" / "error.txt").write_text("boom")
    (out / "rte__fisher__seed1" / "config.yaml").write_text("{}")
    (out / "launcher.json").write_text(
        json.dumps({"runs": {"rte__fisher__seed1": {"launcher": "slurm", "job_id": "77_1"}}})
    )
    assert main(["sweep", str(spec), "--output", str(out), "--status"]) == 0
    printed = capsys.readouterr().out
    assert "failed     rte__fisher__seed1  [slurm job 77_1: " in printed and "pending    rte__fisher__seed2" in printed
    assert "1 failed, 3 pending" in printed


def test_unknown_score_or_task_fails_before_anything_runs(tmp_path, capsys):
    for key, wrong, right in (("score", "sensitivty", "sensitivity"), ("task", "mrcp", "mrpc")):
        grid = {**GRID["grid"], key: [wrong]}
        spec = tmp_path / "grid.yaml"
        spec.write_text(yaml.safe_dump({"grid": grid}))
        assert main(["sweep", str(spec), "--output", str(tmp_path / "out"), "--dry-run"]) == 2
        error = capsys.readouterr().err
        assert f"unknown {key} '{wrong}'. Did you mean '{right}'?" in error, error
        assert not (tmp_path / "out").exists()


def test_a_missing_extra_names_it(tmp_path, capsys, monkeypatch):
    spec = tmp_path / "grid.yaml"
    spec.write_text(yaml.safe_dump(GRID))
    for launcher, module in (("slurm", "submitit"), ("ray", "ray")):
        monkeypatch.setitem(sys.modules, module, None)  # an import of it fails as if it were not installed
        assert main(["sweep", str(spec), "--output", str(tmp_path / "out"), "--launcher", launcher]) == 2
        assert f"the {launcher} launcher needs {module}: pip install -e '.[{launcher}]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_process_launcher_survives_a_crashed_run(tmp_path, tiny_model_dir, reference, capsys):
    out = tmp_path / "out"
    spec, armed = write_sweep(tmp_path / "config", tiny_model_dir, out, ["sensitivity", "sensitivity_fault"], [1])
    armed.write_text("kill")
    command = ["sweep", str(spec), "--output", str(out), "--launcher", "process", "--jobs", "2"]
    assert main(command) == 1
    printed = capsys.readouterr().out
    crashed = out / RUNS[1]
    assert (
        f"failed: {RUNS[1]} (see {crashed / 'error.txt'}" in printed
        and "1 trained, 0 already done, 1 failed" in printed
    )
    assert (tmp_path / "config" / "fired").exists() and finished(out) == RUNS[:1]
    assert "was killed by SIGKILL" in (crashed / "error.txt").read_text()
    assert (crashed / "checkpoint.pt").is_file()
    assert_same_runs(reference, out, RUNS[:1])
    assert main(command) == 0  # the crashed run resumes from its checkpoint; the finished one is skipped
    assert "1 trained, 1 already done, 0 failed" in capsys.readouterr().out
    assert json.loads((crashed / "metrics.json").read_text())["resumed_from_step"] == 5
    assert_same_runs(reference, out, RUNS)
