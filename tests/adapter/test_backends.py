"""The distributed backends (``adapter/distributed/backend.py``), without a second process: which backend accelerate's
set-up selects, their refusals, and ZeRO-3's sizes and NaN guard against a stand-in for DeepSpeed.

The stand-in copies what ZeRO-3 leaves on a partitioned parameter (``deepspeed/runtime/zero/partition_parameters.py``):
an empty tensor (``shape == (0,)``) carrying ``ds_id``, ``ds_shape`` and ``ds_numel``, with ``p.grad`` None, while the
full gradient is only reachable through ``deepspeed.utils.safe_get_full_grad``. The real two-process ZeRO-3 run is
in ``test_deepspeed.py`` (skipped where deepspeed is not installed); FSDP2's guard runs on two processes in
``test_fsdp2.py``."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest
import torch
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType

from adalora_scores.adapter.distributed import (
    BACKENDS,
    Backend,
    FullyShardedBackend,
    SingleProcessBackend,
    ZeroStage3Backend,
    choose_backend,
    resolve_backend,
)
from adalora_scores.allocation.layout import AdaptedMatrix, TripletLayout
from adalora_scores.engine.adapter import check_engine_run


@pytest.fixture
def accelerate_state(monkeypatch):
    def set_state(kind, fsdp_version=None, zero_stage=None):
        monkeypatch.setitem(PartialState._shared_state, "distributed_type", kind)
        plugin = None if fsdp_version is None else SimpleNamespace(fsdp_version=fsdp_version)
        monkeypatch.setitem(AcceleratorState._shared_state, "fsdp_plugin", plugin)
        deepspeed = None
        if zero_stage is not None:
            deepspeed = SimpleNamespace(
                deepspeed_config={"zero_optimization": {"stage": zero_stage}}, zero_stage=zero_stage
            )
        monkeypatch.setitem(AcceleratorState._shared_state, "deepspeed_plugins", deepspeed)

    return set_state


@pytest.mark.parametrize(
    ("kind", "options", "expected"),
    [
        (None, {}, SingleProcessBackend),
        (DistributedType.NO, {}, SingleProcessBackend),
        (DistributedType.MULTI_GPU, {}, SingleProcessBackend),
        (DistributedType.MULTI_CPU, {}, SingleProcessBackend),
        (DistributedType.FSDP, {"fsdp_version": 2}, FullyShardedBackend),
        (DistributedType.DEEPSPEED, {"zero_stage": 3}, ZeroStage3Backend),
    ],
)
def test_accelerates_set_up_chooses_the_backend(accelerate_state, kind, options, expected):
    accelerate_state(kind, **options)
    assert type(choose_backend()) is expected
    assert type(choose_backend(kind)) is expected


@pytest.mark.parametrize("options", [{"fsdp_version": 1}, {"zero_stage": 2}])
def test_set_ups_without_full_gradients_are_refused_when_choosing(accelerate_state, options):
    kind = DistributedType.FSDP if "fsdp_version" in options else DistributedType.DEEPSPEED
    accelerate_state(kind, **options)
    with pytest.raises(RuntimeError, match="To fix it"):
        choose_backend()


def test_backends_by_name():
    assert sorted(BACKENDS) == ["fsdp2", "single", "zero3"]
    for name in BACKENDS:
        assert type(resolve_backend(name)) is BACKENDS.get(name) and BACKENDS.get(name).name == name
    instance = ZeroStage3Backend()
    assert resolve_backend(instance) is instance
    with pytest.raises(ValueError, match=r"backend='zero2': unknown; choose one of \['fsdp2', 'single', 'zero3'\]"):
        resolve_backend("zero2")


def test_zero3_refuses_what_the_engine_cannot_do_there():
    backend = ZeroStage3Backend()
    check_engine_run(backend, resume=False, checkpoint_every=0, nonfinite="stop")
    with pytest.raises(ValueError, match="checkpoints .* set checkpoint_every=0"):
        check_engine_run(backend, resume=False, checkpoint_every=None, nonfinite="stop")
    with pytest.raises(ValueError, match="--resume.*nonfinite=skip"):
        check_engine_run(backend, resume=True, checkpoint_every=0, nonfinite="skip")
    with pytest.raises(RuntimeError, match="not supported under DeepSpeed ZeRO-3"):
        backend.check_per_example()
    for other in (SingleProcessBackend(), FullyShardedBackend()):  # nothing refused
        check_engine_run(other, resume=True, checkpoint_every=None, nonfinite="skip")
        other.check_per_example()


# -- ZeRO-3 against a stand-in -------------------------------------------------------------------------------------
def partitioned(full: torch.Tensor, ds_id: int) -> torch.nn.Parameter:
    """What ZeRO-3 leaves on every process: an empty parameter with the full shape in ``ds_shape``."""
    parameter = torch.nn.Parameter(torch.empty(0))
    parameter.ds_id, parameter.ds_shape, parameter.ds_numel = ds_id, tuple(full.shape), full.numel()
    return parameter


@pytest.fixture
def stand_in_deepspeed(monkeypatch):
    """``deepspeed.utils.safe_get_full_grad``/``safe_get_full_fp32_param`` reading from dictionaries (the optimizer's
    partitions, gathered)."""
    gradients: dict[int, torch.Tensor] = {}
    values: dict[int, torch.Tensor] = {}
    utils = types.ModuleType("deepspeed.utils")
    utils.safe_get_full_grad = lambda p: gradients.get(p.ds_id)
    utils.safe_get_full_fp32_param = lambda p: values[p.ds_id]
    package = types.ModuleType("deepspeed")
    package.utils = utils
    monkeypatch.setitem(sys.modules, "deepspeed", package)
    monkeypatch.setitem(sys.modules, "deepspeed.utils", utils)
    return gradients, values


class TwoMatrices(torch.nn.Module):
    """Two rank-2 triplets P Λ Q of a 3 × 4 and a 5 × 4 matrix, partitioned; the full values are drawn."""

    def __init__(self, values: dict[int, torch.Tensor]) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        shapes = {
            "a_right": (2, 4),
            "a_value": (2, 1),
            "a_left": (3, 2),
            "b_right": (2, 4),
            "b_value": (2, 1),
            "b_left": (5, 2),
        }
        for ds_id, (name, shape) in enumerate(shapes.items()):
            values[ds_id] = torch.randn(shape, generator=generator)
            self.register_parameter(name, partitioned(values[ds_id], ds_id))

    def matrices(self) -> list[AdaptedMatrix]:
        return [
            AdaptedMatrix(
                key,
                right=getattr(self, f"{key}_right"),
                value=getattr(self, f"{key}_value"),
                left=getattr(self, f"{key}_left"),
            )
            for key in ("a", "b")
        ]


def test_zero3_layout_sizes_come_from_the_full_shapes(stand_in_deepspeed):
    _, values = stand_in_deepspeed
    model = TwoMatrices(values)
    backend = ZeroStage3Backend()
    layout = TripletLayout(model.matrices(), backend.parameter_access())
    assert layout.shapes == {"a": (2, 3, 4), "b": (2, 5, 4)} and layout.ranks == [2, 2] and layout.num_triplets == 4
    assert layout.numel == 2 * 4 + 2 + 3 * 2 + 2 * 4 + 2 + 5 * 2
    assert [backend.numel(p) for p in model.parameters()] == [8, 2, 6, 8, 2, 10]
    gathered = layout.gather_parameters()  # the full values, in the layout's flat order
    assert gathered.numel() == layout.numel and torch.equal(gathered[:8], values[0].view(-1))
    with pytest.raises(ValueError):  # read as plain tensors, the (0,)-shaped partitions have no matrix sizes
        TripletLayout(model.matrices())


def test_zero3_nan_guard_reads_the_optimizers_gradients(stand_in_deepspeed):
    """``p.grad`` is None under ZeRO-3, so a guard that reads it sees nothing; the backend's reads the full
    gradients from DeepSpeed's optimizer."""
    gradients, values = stand_in_deepspeed
    model = TwoMatrices(values)
    for ds_id, value in values.items():
        gradients[ds_id] = torch.ones_like(value)
    assert all(p.grad is None for p in model.parameters())
    backend = ZeroStage3Backend()
    assert backend.nonfinite_parameter(model) is None
    gradients[4][1, 0] = float("nan")  # b's λ
    assert backend.nonfinite_parameter(model) == "b_value"
    assert SingleProcessBackend().nonfinite_parameter(model) is None  # blind to it: why ZeRO-3 has its own
    gradients[4][1, 0] = 1.0
    gradients[0][0, 0] = float("inf")
    assert backend.nonfinite_parameter(model) == "a_right"


def test_single_process_nan_guard_names_the_first_bad_gradient():
    model = torch.nn.Linear(3, 2)
    model(torch.ones(1, 3)).sum().backward()
    backend = SingleProcessBackend()
    assert backend.nonfinite_parameter(model) is None
    model.bias.grad[0] = float("nan")
    assert backend.nonfinite_parameter(model) == "bias"
    model.weight.requires_grad_(False)  # a frozen parameter is never checked
    model.weight.grad = torch.full_like(model.weight, float("inf"))
    assert backend.nonfinite_parameter(model) == "bias"


def test_the_single_process_backend_refuses_a_model_partitioned_behind_its_back(stand_in_deepspeed):
    _, values = stand_in_deepspeed
    model = TwoMatrices(values)
    layout = TripletLayout(_plain_matrices())
    with pytest.raises(RuntimeError, match=r"ZeRO-3 partitions .* backend='zero3'"):
        SingleProcessBackend().follow(layout, model)
    assert SingleProcessBackend().follow(layout, None) is False


def _plain_matrices() -> list[AdaptedMatrix]:
    parameter = torch.nn.Parameter
    return [
        AdaptedMatrix(
            "a", right=parameter(torch.ones(2, 4)), value=parameter(torch.ones(2, 1)), left=parameter(torch.ones(3, 2))
        )
    ]


def test_only_the_single_process_backend_refuses_partitioned_parameters(stand_in_deepspeed):
    _, values = stand_in_deepspeed
    model = TwoMatrices(values)
    layout = TripletLayout(model.matrices(), ZeroStage3Backend().parameter_access())
    assert ZeroStage3Backend().follow(layout, model) is False  # partitioned parameters are what it expects


def test_a_registered_backend_is_chosen_for_the_type_it_handles():
    class Dummy(Backend):
        name = "dummy"

        @classmethod
        def handles(cls, distributed_type):
            return distributed_type == "FAKE_TYPE"

    BACKENDS.register(Dummy.name, Dummy)
    try:
        assert type(choose_backend("FAKE_TYPE")) is Dummy and type(resolve_backend("dummy")) is Dummy
        assert type(choose_backend(DistributedType.MULTI_GPU)) is SingleProcessBackend
        BACKENDS.register("dummy_too", type("DummyToo", (Dummy,), {"name": "dummy_too"}))
        with pytest.raises(RuntimeError, match=r"\['dummy', 'dummy_too'\] all handle FAKE_TYPE"):
            choose_backend("FAKE_TYPE")
    finally:
        BACKENDS.unregister("dummy")
        if "dummy_too" in BACKENDS:
            BACKENDS.unregister("dummy_too")
    assert type(choose_backend("FAKE_TYPE")) is SingleProcessBackend  # what no backend handles: single
