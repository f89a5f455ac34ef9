"""The slurm launcher through submitit's local executor: the real submission, pickling and requeue code in real
subprocesses. A run preempted mid-way (SIGUSR2, as Slurm signals a preempted task) checkpoints through
``SweepTask.checkpoint``, is requeued, resumes from its checkpoint and ends bit-identical to the in-process sweep."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
from _launcher_grid import RUNS, assert_same_runs, finished, forget_plugins, reference_sweep, write_sweep

submitit = pytest.importorskip("submitit")


@pytest.fixture(autouse=True)
def no_plugin_left():
    yield
    forget_plugins()


def test_a_preempted_task_is_requeued_and_resumes_bit_exact(tmp_path, tiny_model_dir):
    from adalora_scores.study.grid import load_sweep
    from adalora_scores.study.launchers.common import jobs_for, read_launcher_record
    from adalora_scores.study.launchers.slurm import SUBMITIT_FOLDER, SweepTask, launch_slurm

    reference = reference_sweep(tmp_path / "reference", tiny_model_dir)
    out = tmp_path / "out"
    spec, armed = write_sweep(tmp_path / "config", tiny_model_dir, out, ["sensitivity_fault"], [1])
    armed.write_text("pause")  # the run stops after its first checkpoint, writes its pid and waits
    runs = load_sweep(spec).runs()
    out.mkdir()
    executor = submitit.LocalExecutor(folder=out / SUBMITIT_FOLDER / "%j")
    executor.update_parameters(timeout_min=30)  # far from its time limit: the signal reads as a preemption
    (task,) = launch_slurm(out, jobs_for(out, runs), {}, executor=executor).values()
    assert read_launcher_record(out)["runs"][RUNS[1]]["job_id"] == task.job_id
    assert isinstance(task.submission().function, SweepTask)
    paused = out / "paused.pid"
    deadline = time.time() + 120
    while not paused.exists() and time.time() < deadline and task.state == "RUNNING":
        time.sleep(0.05)
    os.kill(int(paused.read_text()), signal.SIGUSR2)  # what Slurm sends a task it preempts
    assert task.result() == "ran"
    log = task.stdout()
    assert "this job is preempted" in task.stderr() + log and "Requeued job" in log
    assert f"{RUNS[1]} (incomplete)" in log  # the requeued task found the run interrupted
    assert finished(out) == RUNS[1:] and not (out / RUNS[1] / "claim.json").exists()
    assert json.loads((out / RUNS[1] / "metrics.json").read_text())["resumed_from_step"] == 5
    assert_same_runs(reference, out, RUNS[1:])
