"""Checkpoints load with ``weights_only=True``: the RNG state survives exactly, and a file that would run code when
unpickled is refused, with nothing run, both from ``load_checkpoint`` and through ``train --resume``."""

from __future__ import annotations

import os
import random
import shlex

import numpy as np
import pytest
import torch
import yaml

from adalora_scores.cli import main
from adalora_scores.engine.checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from adalora_scores.presets.overrides import resolve_config


class _RunsCode:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _draws() -> tuple[float, float, list[float]]:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def _malicious_checkpoint(folder, marker):
    """A checkpoint that is valid in every key but carries a code-running object."""
    return save_checkpoint(folder, {"progress": {"step": 2}, "rng": capture_rng(), "payload": _RunsCode(marker)})


def test_rng_state_round_trips_through_a_safe_load(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    random.random(), np.random.rand(5), np.random.randn()  # a cached Gaussian is part of numpy's state
    save_checkpoint(tmp_path, {"progress": {"step": 7}, "rng": capture_rng(), "weights": {"w": torch.ones(2)}})
    expected = _draws()
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    state = load_checkpoint(tmp_path)
    assert state["progress"] == {"step": 7} and torch.equal(state["weights"]["w"], torch.ones(2))
    assert isinstance(state["rng"]["numpy"][1], np.ndarray) and state["rng"]["numpy"][1].dtype == np.uint32
    restore_rng(state["rng"])
    assert _draws() == expected


def test_a_checkpoint_that_would_run_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    control = _malicious_checkpoint(tmp_path / "control", marker)
    torch.load(control, weights_only=False)  # the payload is real: an unsafe load runs it
    assert marker.exists()
    marker.unlink()
    path = _malicious_checkpoint(tmp_path / "run", marker)
    with pytest.raises(ValueError, match="was not loaded") as error:
        load_checkpoint(tmp_path / "run")
    assert str(path) in str(error.value) and "posix.system" in str(error.value)
    assert not marker.exists()


def test_train_resume_refuses_such_a_checkpoint(tmp_path, glue_root, tiny_model_dir, capsys):
    args = ["--task", "rte", "--model", str(tiny_model_dir), "--data", str(glue_root / "rte")]
    config = resolve_config(
        None, "rte", {"task": "rte", "model": str(tiny_model_dir), "data": str(glue_root / "rte")}, []
    )
    out, marker = tmp_path / "out", tmp_path / "ran"
    out.mkdir()
    (out / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    path = _malicious_checkpoint(out, marker)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    capsys.readouterr()
    assert main(["train", *args, "--output", str(out), "--resume"]) == 2
    error = capsys.readouterr().err
    assert error.count("error:") == 1 and f"{path} was not loaded" in error, error
    assert not marker.exists()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing written
