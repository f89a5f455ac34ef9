"""FSDP2 (``fully_shard``) on CPU: 2 gloo processes against 1 process with the same global batch (a tiny LLaMA,
fp32, every decoder layer and the root wrapped as accelerate does, λ sharded unevenly), for ``sensitivity``,
``fisher_per_example`` and ``task_gradient_only``: the same masks at every step on every process and as the single
process, the same final rank pattern, triplet scores within float32 summation order, and pruned λ zero in every
shard. The engine's save and checkpoint functions (``adapter/distributed/``, ``AdaptedModel.save``) on the sharded
model: the saved adapter equals the single process's and loads in stock PEFT; a checkpoint holds full tensors and
resumes into a freshly sharded model exactly like an uninterrupted sharded run. The start-up check (FSDP2 allowed;
FSDP1 and DeepSpeed refused) with simulated accelerate state, and the layout's rebind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType
from peft import PeftModel
from safetensors.torch import load_file

import adalora_scores
from adalora_scores.adapter.distributed.sharding import check_full_gradients, current_fsdp_version
from adalora_scores.allocation.layout import AdaptedMatrix, TripletLayout

WORKER = Path(__file__).parents[1] / "_fsdp2_worker.py"
sys.path.insert(0, str(WORKER.parent))
import _fsdp2_worker as worker  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{case: (single, rank 0, rank 1)}``: the 2-process FSDP2 run (torchrun) and the 1-process reference."""
    out = tmp_path_factory.mktemp("fsdp2")
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(WORKER.parent), *sys.path]),
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29573",
        str(WORKER),
        str(out),
    ]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    results = {}
    for name, options in worker.CASES.items():
        single = worker.train_case(options, None, 1)
        results[name] = (single, *(torch.load(out / f"{name}-{rank}.pt") for rank in (0, 1)))
    results["engine"] = (worker.engine_case(out, None, 1), *(torch.load(out / f"engine-{r}.pt") for r in (0, 1)))
    results["nonfinite"] = (worker.nonfinite_case(None, 1), *(torch.load(out / f"nonfinite-{r}.pt") for r in (0, 1)))
    results["out"] = out
    return results


@pytest.mark.parametrize("case", list(worker.CASES))
def test_two_fsdp2_processes_allocate_like_one_process(case, runs):
    single, first, second = runs[case]
    assert first["sharded"] == second["sharded"] == "DTensor"  # the allocator ran on fully_shard's parameters
    assert torch.equal(first["masks"], second["masks"])  # every process holds the same mask at every step
    assert torch.equal(first["masks"], single["masks"])
    assert len({tuple(mask.tolist()) for mask in single["masks"]}) >= 3  # masking happened, and changed
    assert first["rank_pattern"] == second["rank_pattern"] == single["rank_pattern"]
    assert torch.equal(first["scores"], second["scores"])  # computed from the same gathered tensors
    scale = single["scores"].abs().max().item()
    # 8 steps of the same float32 sums in two orders (reduce-scatter vs one process), carried by the EMAs; about
    # 170 eps, 20x the largest relative difference measured (8.9e-7, on a CPU with AVX512-BF16)
    torch.testing.assert_close(first["scores"], single["scores"], rtol=2e-5, atol=1e-6 * scale)
    pruned = ~first["masks"][-1]
    assert pruned.any() and first["values"][pruned].abs().max() == 0  # the mask reached every process's shard
    # O(0.1) adapter values after 8 AdamW steps on gradients summed in two orders; measured 1.0e-7 at most
    torch.testing.assert_close(first["values"], single["values"], rtol=1e-5, atol=1e-6)


# -- the engine's save and checkpoint functions -------------------------------------------------------------------
def reloaded_logits(folder: Path) -> torch.Tensor:
    """Stock PEFT: the saved adapter on a fresh base model (the same seeded draw as in training)."""
    base = worker.tiny_model(worker.tiny_config("llama", vocab_size=worker.VOCABULARY), head="causal-lm")
    model = PeftModel.from_pretrained(base, folder).eval()
    with torch.no_grad():
        return model(input_ids=worker.global_batches()[0]["input_ids"]).logits


def test_the_sharded_adapter_saves_like_one_process_and_loads_in_stock_peft(runs, recwarn):
    single, first, second = runs["engine"]
    out = runs["out"]
    assert torch.equal(first["masks"], second["masks"]) and torch.equal(first["masks"], single["masks"])
    sharded, alone = out / "adapter-fsdp2", out / "adapter-single"
    config = json.loads((sharded / "adapter_config.json").read_text())
    assert config["rank_pattern"] == json.loads((alone / "adapter_config.json").read_text())["rank_pattern"]
    weights = load_file(sharded / "adapter_model.safetensors")
    reference = load_file(alone / "adapter_model.safetensors")
    assert first["empty"] == single["empty"] and first["empty"]  # matrices pruned to rank 0 ...
    for name in first["empty"]:  # ... saved at rank 1 with λ = 0 (saving.py), from the gathered state dict
        assert config["rank_pattern"][name.removesuffix(".default")][0] is True
        value = weights["base_model.model." + name.removesuffix(".default")]
        assert value.shape == (1, 1) and value.item() == 0
    assert weights.keys() == reference.keys() and any("lora_E" in key for key in weights)
    for key, value in reference.items():  # trained in two orders of the same sums; measured 3.0e-7 at most
        torch.testing.assert_close(weights[key], value, rtol=1e-4, atol=1e-5, msg=key)
    torch.testing.assert_close(reloaded_logits(sharded), reloaded_logits(alone), rtol=1e-4, atol=1e-5)
    assert not [w for w in recwarn if "ZeRO-3" in str(w.message)]  # PEFT's zero-size alarm (saving.py)


def test_a_sharded_checkpoint_holds_full_tensors_and_resumes_like_an_uninterrupted_run(runs):
    single, first, second = runs["engine"]
    for result in (first, second):
        assert result["resumed_sharded"] == "DTensor"  # restored into fully_shard's parameters
        assert torch.equal(result["resumed_masks"], result["masks"])
        for name, value in result["trainable"].items():
            assert torch.equal(result["resumed_trainable"][name], value), name
    assert torch.equal(single["resumed_masks"], single["masks"])
    checkpoint = torch.load(runs["out"] / "checkpoint-fsdp2.pt", weights_only=True)
    assert not first["checkpoint_sharded"] and set(checkpoint["trainable"]) == set(single["trainable"])
    for name, value in checkpoint["trainable"].items():  # full tensors, the shapes of the single process's
        assert type(value) is torch.Tensor and value.shape == single["trainable"][name].shape
    assert all(isinstance(name, str) for name in checkpoint["optimizer"]["state"])  # keyed by parameter name


def test_the_nan_guard_stops_every_process_when_one_shard_is_not_finite(runs):
    """A NaN in the last process's rows of one gradient: that process names the parameter, the other learns of it
    through the all-reduce, so both stop or skip together (a one-sided stop would leave the other in a collective)."""
    single, first, second = runs["nonfinite"]
    assert single["finite"] is first["finite"] is second["finite"] is None
    assert single["poisoned"] == second["poisoned"] == second["name"]
    assert first["poisoned"] == "a parameter shard held by another process"


def test_fully_shard_without_a_named_backend_is_refused_at_the_first_allocation(runs):
    """A loop that wraps the model itself must name the backend: the single-process one would read stale tensors."""
    del runs  # after the two-process run: torch.distributed is free for a one-process group here
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29574")
    dist.init_process_group("gloo", rank=0, world_size=1)
    try:
        model, allocator, _ = worker.build(worker.ENGINE_OPTIONS)
        fully_shard(model, mesh=init_device_mesh("cpu", (1,)))
        model(**worker.global_batches()[0]).loss.backward()
        with pytest.raises(RuntimeError, match=r"FSDP2 shards .* backend='fsdp2'"):
            model.base_model.update_and_allocate(1)
    finally:
        dist.destroy_process_group()


# -- the start-up check ------------------------------------------------------------------------------------------
@pytest.fixture
def accelerate_state(monkeypatch):
    """Simulated accelerate state (accelerate enables FSDP only on accelerators)."""

    def set_state(kind, fsdp_version=None):
        monkeypatch.setitem(PartialState._shared_state, "distributed_type", kind)
        plugin = None if fsdp_version is None else SimpleNamespace(fsdp_version=fsdp_version)
        monkeypatch.setitem(AcceleratorState._shared_state, "fsdp_plugin", plugin)

    return set_state


def test_fsdp2_is_allowed_and_fsdp1_and_deepspeed_are_refused(accelerate_state):
    accelerate_state(DistributedType.FSDP, fsdp_version=2)
    assert current_fsdp_version() == 2
    check_full_gradients(DistributedType.FSDP)  # read from the plugin
    check_full_gradients(DistributedType.FSDP, fsdp_version=2)
    for version in (1, None):  # accelerate's default plugin is FSDP1; no plugin: not FSDP2 either
        accelerate_state(DistributedType.FSDP, fsdp_version=version)
        with pytest.raises(RuntimeError, match=r"which FSDP1 .* To fix it, set `fsdp_version: 2`"):
            check_full_gradients(DistributedType.FSDP)
    with pytest.raises(RuntimeError, match=r"which DeepSpeed .* or FSDP2 \(fsdp_version: 2\)"):
        check_full_gradients(DistributedType.DEEPSPEED, fsdp_version=2)
    check_full_gradients(DistributedType.MULTI_GPU)
    check_full_gradients(None)


def test_attach_accepts_fsdp2_state_and_refuses_fsdp1(accelerate_state):
    from _tiny import tiny_adalora

    model = tiny_adalora()
    accelerate_state(DistributedType.FSDP, fsdp_version=1)
    with pytest.raises(RuntimeError, match="which FSDP1"):
        adalora_scores.attach(model, score="sensitivity")
    accelerate_state(DistributedType.FSDP, fsdp_version=2)
    allocator = adalora_scores.attach(model, score="sensitivity")
    assert allocator.layout.num_triplets > 0 and allocator.backend.name == "fsdp2"  # chosen once, at attach
    accelerate_state(DistributedType.MULTI_GPU)
    assert adalora_scores.attach(model, score="sensitivity").backend.name == "single"


# -- the layout's rebind -------------------------------------------------------------------------------------------
def matrix(name: str, rank: int = 2, out: int = 3, inp: int = 4) -> AdaptedMatrix:
    parameter = torch.nn.Parameter
    return AdaptedMatrix(
        name,
        right=parameter(torch.randn(rank, inp)),
        value=parameter(torch.randn(rank, 1)),
        left=parameter(torch.randn(out, rank)),
    )


def test_rebind_points_the_layout_at_new_parameters_and_refuses_other_matrices():
    layout = TripletLayout([matrix("a"), matrix("b", rank=3)])
    new = [matrix("b", rank=3), matrix("a")]  # any order: matched by name
    layout.rebind(new)
    assert [m.name for m in layout.matrices] == ["a", "b"] and layout.matrices[0] is new[1]
    expected = torch.cat(
        [
            new[1].right.view(-1),
            new[1].left.view(-1),
            new[1].value.view(-1),
            new[0].right.view(-1),
            new[0].left.view(-1),
            new[0].value.view(-1),
        ]
    )
    assert torch.equal(layout.gather_parameters(), expected.detach())
    layout.apply_keep_mask(torch.tensor([True, False, False, True, True]))
    assert new[1].value[1].item() == 0 and new[0].value[0].item() == 0
    with pytest.raises(ValueError, match="names differ"):
        layout.rebind([matrix("a")])
    with pytest.raises(ValueError, match="another shape"):
        layout.rebind([matrix("a", out=5), matrix("b", rank=3)])


def test_the_engine_builds_under_fsdp2(accelerate_state):
    from adalora_scores.adapter.peft.build import build_adapted_model
    from adalora_scores.config import TrainConfig
    from adalora_scores.demo.tiny_models import tiny_config, tiny_model
    from adalora_scores.engine.adapter import adapter_spec

    accelerate_state(DistributedType.FSDP, fsdp_version=2)
    model = tiny_model(tiny_config("llama", vocab_size=64), head="causal-lm")
    adapted = build_adapted_model(model, adapter_spec(TrainConfig(task="causal", init_r=3, target_r=1), 10))
    assert adapted.allocator is not None and adapted.allocator.layout.num_triplets > 0
