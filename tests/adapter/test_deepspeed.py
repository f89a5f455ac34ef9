"""DeepSpeed ZeRO-3 on CPU (``DS_ACCELERATOR=cpu``, gloo): 2 processes against 1 plain process on the same global
batch (a tiny LLaMA, fp32, torch AdamW, every adapter weight partitioned by ``stage3_param_persistence_threshold:
0``), ``sensitivity``: the same masks at every step on every process and as the single process, triplet scores
within float32 summation order, and pruned λ zero in both the forward weights and the fp32 master copy after a
further step. The start-up checks (ZeRO-3 allowed; stages 0 - 2, per-example gradients and the engine's checkpoints
refused) with simulated accelerate state. Skipped where ``import deepspeed`` fails (it is not in the ``test``
extra; ``pip install -e '.[deepspeed]'``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

import adalora_scores
from adalora_scores.adapter.distributed.sharding import check_full_gradients, current_zero_stage

deepspeed = pytest.importorskip("deepspeed", reason="DeepSpeed is not installed (pip install deepspeed)")

WORKER = Path(__file__).parents[1] / "_deepspeed_worker.py"
sys.path.insert(0, str(WORKER.parent))
import _deepspeed_worker as worker  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``(single, rank 0, rank 1)``: the 2-process ZeRO-3 run (torchrun) and the 1-process reference."""
    out = tmp_path_factory.mktemp("zero3")
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "DS_ACCELERATOR": "cpu",
        "PYTHONPATH": os.pathsep.join([str(WORKER.parent), *sys.path]),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29587",
        str(WORKER),
        str(out),
    ]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return worker.single_run(), *(torch.load(out / f"zero3-{rank}.pt") for rank in (0, 1))


def test_two_zero3_processes_allocate_like_one_process(runs):
    single, first, second = runs
    assert first["access"] == second["access"] == "DeepSpeedAccess"  # the allocator read through DeepSpeed
    assert first["partitioned"] and second["partitioned"]  # λ was an empty partition (p.shape == (0,))
    assert torch.equal(first["masks"], second["masks"])  # every process holds the same mask at every step
    assert torch.equal(first["masks"], single["masks"])
    assert len({tuple(mask.tolist()) for mask in single["masks"]}) >= 3  # masking happened, and changed
    assert first["pattern"] == single["pattern"]
    # the same float32 sums in two orders (ZeRO-3's partitioned reduce vs one process) over the run's steps, carried
    # by the EMAs; 1e-4 (840 eps) as for the other two-process comparisons, whose measured spread is below 1e-6
    torch.testing.assert_close(first["scores"], single["scores"], rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(
        torch.tensor(first["losses"]) + torch.tensor(second["losses"]),
        2 * torch.tensor(single["losses"]),
        rtol=1e-4,
        atol=1e-5,
    )


def test_pruned_values_are_zero_in_the_forward_weights_and_the_master_copy(runs):
    _, first, second = runs
    pruned = ~first["rank_pattern_keep"]
    assert pruned.any() and not pruned.all()
    for result in (first, second):
        assert torch.equal(result["forward"][pruned], torch.zeros(int(pruned.sum())))
        assert torch.equal(result["master"][pruned], torch.zeros(int(pruned.sum())))
        assert (result["master"][~pruned] != 0).all()


@pytest.fixture
def deepspeed_state(monkeypatch):
    """Simulate accelerate's state with a DeepSpeed plugin of ZeRO stage ``stage``."""

    def set_state(stage):
        monkeypatch.setitem(PartialState._shared_state, "distributed_type", DistributedType.DEEPSPEED)
        plugin = SimpleNamespace(deepspeed_config={"zero_optimization": {"stage": stage}}, zero_stage=stage)
        monkeypatch.setitem(AcceleratorState._shared_state, "deepspeed_plugins", plugin)

    return set_state


def test_zero3_is_allowed_and_stages_0_to_2_are_refused(deepspeed_state):
    deepspeed_state(3)
    assert current_zero_stage() == 3
    check_full_gradients(DistributedType.DEEPSPEED)
    for stage in (0, 1, 2):
        deepspeed_state(stage)
        with pytest.raises(RuntimeError, match=rf"which DeepSpeed ZeRO stage {stage} .* set `zero_stage: 3`"):
            check_full_gradients(DistributedType.DEEPSPEED)


def test_attach_refuses_per_example_gradients_under_deepspeed(deepspeed_state):
    from _tiny import tiny_adalora

    deepspeed_state(3)
    model = tiny_adalora()
    adalora_scores.attach(model, score="sensitivity")
    for options in ({"score": "fisher_per_example"}, {"score": "sensitivity", "task_gradient_only": True}):
        with pytest.raises(RuntimeError, match="not supported under DeepSpeed ZeRO-3"):
            adalora_scores.attach(model, **options)


def test_the_nan_guard_sees_zero3_gradients_that_p_grad_does_not_hold(runs):
    """ZeRO-3 leaves ``p.grad`` None; the backend's guard reads DeepSpeed's optimizer: nothing while the gradients
    are finite, and the parameter's name on every process once one entry of its full gradient is NaN."""
    _, first, second = runs
    for result in (first, second):
        finite, poisoned, name = result["nonfinite"]
        assert result["grad_is_none"] and finite is None and poisoned == name and "lora_A" in name
