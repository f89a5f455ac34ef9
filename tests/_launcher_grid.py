"""A tiny sweep for the launcher tests, a plugin score with an injected fault, and the bit-for-bit comparison of
two sweeps' run folders.

The plugin registers ``sensitivity_fault``: AdaLoRA's sensitivity, except that while the file ``armed`` exists and the
fault run has written a checkpoint, its process faults once: ``kill`` (SIGKILL itself) or ``pause`` (write its process
id to ``paused.pid`` and sleep, so that a test can preempt it). The file is renamed first, so a retried or requeued
process trains on undisturbed, and an unarmed sweep trains exactly like ``sensitivity``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from _registries import forget_plugins
from safetensors.torch import load_file

FAULT_PLUGIN = '''
import os
import signal
import time
from pathlib import Path

from adalora_scores import register_score
from adalora_scores.scores import get_score_class

ARMED = Path({armed!r})
WATCH = Path({watch!r})


@register_score("sensitivity_fault")
class SensitivityFault(get_score_class("sensitivity")):
    """Sensitivity, with one injected fault of its process while the file ARMED exists."""

    def update(self, param, grad):
        if ARMED.exists() and any(WATCH.glob("*sensitivity_fault*/checkpoint.pt")):
            mode = ARMED.read_text().strip()
            os.replace(ARMED, ARMED.with_name("fired"))
            if mode == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            (WATCH / "paused.pid").write_text(str(os.getpid()))
            time.sleep(120)
        super().update(param, grad)
'''

SETTINGS = {
    "num_epochs": 1,
    "batch_size": 2,
    "max_seq_length": 24,
    "init_r": 4,
    "target_r": 2,
    "mask_interval": 1,
    "budget_warmup": 0.1,
    "budget_final": 0.2,
    "checkpoint_every": 5,
}

VOLATILE = ("wall_seconds", "resumed_from_step")
"""Metrics that say how a run went (its wall time, where it resumed), not what it computed."""


def write_sweep(root: Path, model: Path, output: Path, scores: list[str], seeds: list[int]) -> tuple[Path, Path]:
    """A sweep file over the contrast task (40 training examples, 20 steps) with the fault plugin watching
    ``output``; returns the sweep file and the plugin's ``armed`` file (not created)."""
    from adalora_scores.tasks.contrast import write_contrast_task

    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    if not data.exists():
        write_contrast_task(data, train=40, dev=8)
    armed = root / "armed"
    plugin = root / "fault_plugin.py"
    plugin.write_text(FAULT_PLUGIN.format(armed=str(armed), watch=str(output)), encoding="utf-8")
    spec = root / "sweep.yaml"
    document = {
        "plugins": [str(plugin)],
        "grid": {"task": ["sst2"], "score": scores, "seed": seeds},
        "set": {"model": str(model), **SETTINGS},
        "data": {"sst2": str(data)},
    }
    spec.write_text(yaml.safe_dump(document), encoding="utf-8")
    return spec, armed


def finished(output: Path) -> list[str]:
    return sorted(path.parent.name for path in output.glob("*/metrics.json"))


def assert_same_runs(reference: Path, other: Path, names: list[str]) -> None:
    """Each run's metrics (but its wall time and resume step) and final adapter weights are equal, bit for bit."""
    for name in names:
        expected = json.loads((reference / name / "metrics.json").read_text())
        got = json.loads((other / name / "metrics.json").read_text())
        for key in VOLATILE:
            expected.pop(key), got.pop(key)
        assert got == expected, name
        (weights,) = sorted((reference / name).glob("**/adapter_model.safetensors"))
        left = load_file(weights)
        right = load_file(other / weights.relative_to(reference))
        assert left.keys() == right.keys() and left, name
        for key in left:
            assert torch.equal(left[key], right[key]), (name, key)


RUNS = ["sst2__sensitivity__seed1", "sst2__sensitivity_fault__seed1"]


def reference_sweep(root: Path, model: Path) -> Path:
    """The in-process (``local``) sweep of :data:`RUNS`, unarmed: what every launcher must reproduce."""
    from adalora_scores.cli import main

    output = root / "local"
    spec, _ = write_sweep(root / "local-config", model, output, ["sensitivity", "sensitivity_fault"], [1])
    forget_plugins()
    assert main(["sweep", str(spec), "--output", str(output)]) == 0
    forget_plugins()
    assert finished(output) == RUNS
    return output
