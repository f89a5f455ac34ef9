"""The ray launcher on a local Ray instance (two CPUs, started once): a tiny grid through ``sweep --launcher ray``,
one of whose workers is killed (SIGKILL) after the run's first checkpoint; Ray retries the task, the retry takes over
the dead worker's claim and resumes from the checkpoint, and every run ends bit-identical to the in-process sweep."""

from __future__ import annotations

import json

import pytest
from _launcher_grid import RUNS, assert_same_runs, finished, forget_plugins, reference_sweep, write_sweep

from adalora_scores.cli import main

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(address=None, num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(autouse=True)
def no_plugin_left():
    yield
    forget_plugins()


def test_a_killed_worker_is_retried_and_the_run_resumes_bit_exact(tmp_path, tiny_model_dir, capsys):
    reference = reference_sweep(tmp_path / "reference", tiny_model_dir)
    out = tmp_path / "out"
    spec, armed = write_sweep(tmp_path / "config", tiny_model_dir, out, ["sensitivity", "sensitivity_fault"], [1])
    armed.write_text("kill")
    command = ["sweep", str(spec), "--output", str(out), "--launcher", "ray", "--ray-max-retries", "2"]
    assert main(command) == 0
    assert "sweep (ray): 2 trained, 0 already done, 0 failed" in capsys.readouterr().out
    assert (tmp_path / "config" / "fired").exists() and finished(out) == RUNS
    (takeover,) = [json.loads(line) for line in (out / RUNS[1] / "takeovers.jsonl").read_text().splitlines()]
    assert takeover["resumed_from_checkpoint"] and "is gone" in takeover["reason"]
    assert json.loads((out / RUNS[1] / "metrics.json").read_text())["resumed_from_step"] == 5
    assert_same_runs(reference, out, RUNS)
    assert main(command) == 0  # everything done: nothing is sent to Ray
    assert "0 trained, 2 already done" in capsys.readouterr().out
