"""DeepSpeed ZeRO stage 3: the allocator on partitioned adapters.

Under ZeRO-3 (``deepspeed.initialize`` with ``zero_optimization.stage: 3``) a partitioned parameter is an empty
tensor on every process (``p.shape == (0,)``, its full shape in ``p.ds_shape``), ``p.grad`` is None, and the
optimizer keeps each process's slice of the averaged gradient and of the fp32 master weights. Hence:

* values and gradients are read whole with ``deepspeed.utils.safe_get_full_fp32_param`` and
  ``safe_get_full_grad`` (``deepspeed/utils/tensor_fragment.py``: all-gathers of the optimizer's partitions), so
  every process computes the same scores and masks. The gradient is the one the last ``engine.step()`` used: it
  stays in the optimizer until the next ``engine.backward`` (checked on deepspeed 0.19.8), so the allocation runs
  after the step, as with any other optimizer;
* a mask is written to both copies of λ: the fp32 master copy (this process's partition, with
  ``safe_get_local_fp32_param``/``safe_set_local_fp32_param``, from which the next ``engine.step()`` writes the
  weights; ``safe_set_full_fp32_param`` fails on the last process of an unevenly partitioned parameter, deepspeed
  0.19.8: ``start (2) + length (2) exceeds dimension size (3)``) and the weights the forward pass gathers
  (``p.data`` inside ``deepspeed.zero.GatheredParameters([...], modifier_rank=0)``, which repartitions process 0's
  values on exit). Either write alone loses the mask;
* the layout's sizes come from ``ds_shape`` (:func:`full_shape`, through :meth:`DeepSpeedAccess.shape`).

PEFT's ``AdaLoraModel.update_and_allocate`` (peft 0.13 - 0.21) only calls the rank allocator's methods, which are
ours (:class:`~adalora_scores.adapter.peft.peft_allocator.PeftRankAllocator`); PEFT's own ``RankAllocator``, which
multiplies the partitioned ``p`` by the full gradient (``The size of tensor a (0) must match ...``), never runs.
PEFT's orthogonal regulariser gathers partitioned ``lora_A``/``lora_B`` itself (``gather_params_ctx``) once
transformers' ``HfDeepSpeedConfig`` exists, which accelerate's DeepSpeed plugin and ``Trainer`` create; a plain
``deepspeed.initialize`` needs ``HfDeepSpeedConfig(ds_config)`` created first.

Every read and write is a collective: every process must make the same allocator calls, which the schedule
guarantees. ZeRO stages 0 - 2 are refused (:mod:`.sharding`), and so are the per-example gradient hooks: their backward
hook reads ``lora_A``/``lora_E``/``lora_B``, which ZeRO-3 may have released by then."""

from __future__ import annotations

from typing import Any

import torch
from accelerate.utils import DistributedType
from torch import Tensor, nn

from adalora_scores.adapter.distributed.backend import BACKENDS, Backend, first_nonfinite
from adalora_scores.allocation.layout import ParameterAccess

__all__ = [
    "DeepSpeedAccess",
    "ZeroStage3Backend",
    "full_gradient",
    "full_numel",
    "full_shape",
    "is_zero3_parameter",
    "zero3_trainable_state",
]


def is_zero3_parameter(tensor: Any) -> bool:
    """Whether ``tensor`` is a parameter managed by DeepSpeed ZeRO-3 (it carries ``ds_id``; partitioned or
    persistent)."""
    return hasattr(tensor, "ds_id")


def full_shape(tensor: Tensor) -> torch.Size:
    """The shape of the whole parameter: a parameter partitioned by ZeRO-3 is an empty tensor (shape ``(0,)``) on
    every process and keeps its full shape in ``ds_shape`` (``deepspeed/runtime/zero/partition_parameters.py``); any
    other tensor's own shape."""
    shape = getattr(tensor, "ds_shape", None)
    return torch.Size(shape) if shape is not None else tensor.shape


def full_numel(parameter: Tensor) -> int:
    """The number of entries of the whole parameter (``ds_numel`` under ZeRO-3)."""
    return getattr(parameter, "ds_numel", None) or parameter.numel()


def full_gradient(parameter: nn.Parameter) -> Tensor | None:
    """The parameter's full gradient of the last step: from DeepSpeed's optimizer for a ZeRO-3 parameter
    (``safe_get_full_grad``, a collective), else ``p.grad``."""
    if not is_zero3_parameter(parameter):
        return parameter.grad
    from deepspeed.utils import safe_get_full_grad

    grad = safe_get_full_grad(parameter)
    return None if grad is None else grad.detach().reshape(full_shape(parameter))


class DeepSpeedAccess(ParameterAccess):
    """Reads ZeRO-3 parameters' full fp32 values and gradients from DeepSpeed's optimizer and writes masks into both
    the fp32 master copy and the forward weights (module docstring). Other tensors are read as they are."""

    def value(self, parameter: nn.Parameter) -> Tensor:
        if not is_zero3_parameter(parameter):
            return super().value(parameter)
        from deepspeed.utils import safe_get_full_fp32_param

        return safe_get_full_fp32_param(parameter).detach().reshape(full_shape(parameter))

    def shape(self, tensor: Tensor) -> torch.Size:
        return full_shape(tensor)

    def gradient(self, parameter: nn.Parameter) -> Tensor | None:
        if not is_zero3_parameter(parameter):
            return super().gradient(parameter)
        return full_gradient(parameter)

    def scale_(self, values: list[Tensor], factors: list[Tensor]) -> None:
        zero3 = [(v, f) for v, f in zip(values, factors, strict=True) if is_zero3_parameter(v)]
        others = [(v, f) for v, f in zip(values, factors, strict=True) if not is_zero3_parameter(v)]
        if others:
            super().scale_([v for v, _ in others], [f for _, f in others])
        if not zero3:
            return
        import deepspeed
        from deepspeed.utils import safe_get_local_fp32_param, safe_set_local_fp32_param

        for value, factor in zero3:  # the fp32 master copy: the next engine.step() starts from it
            local = safe_get_local_fp32_param(value)  # this process's partition (padded)
            safe_set_local_fp32_param(value, local * _local_rows(value, factor, local.numel()).to(local))
        parameters = [v for v, _ in zero3]
        with deepspeed.zero.GatheredParameters(parameters, modifier_rank=0):  # the forward weights
            if torch.distributed.get_rank() == 0:
                for value, factor in zero3:
                    value.data.mul_(factor.to(value.dtype).reshape(value.shape))


def _local_rows(parameter: nn.Parameter, factor: Tensor, size: int) -> Tensor:
    """The entries of ``factor`` (the full parameter's shape) that fall in this process's ZeRO-3 partition of
    ``parameter``: process i of its partition group holds flat entries ``[i·size, (i+1)·size)``, the last one padded
    (``partition_parameters.py``, ``_partition_param``); padding gets factor 1."""
    rank = torch.distributed.get_rank(group=parameter.ds_process_group)
    flat = factor.reshape(-1)
    padded = torch.ones(size * (rank + 1), dtype=flat.dtype, device=flat.device)
    end = min(flat.numel(), padded.numel())
    padded[:end] = flat[:end]
    return padded[rank * size :]


def zero3_trainable_state(model: nn.Module) -> dict[str, Tensor]:
    """``{name: full tensor on the CPU}`` of every trainable parameter of ``model`` (the PEFT model, unwrapped from
    the DeepSpeed engine), from DeepSpeed's fp32 master copy (``safe_get_full_fp32_param``, cast to the parameter's
    dtype), for saving the adapter. Gathers only the trainable parameters (the adapter and the head are small), so
    it needs no ``stage3_gather_16bit_weights_on_model_save``. A collective: every process calls it, and every
    process gets the full tensors."""
    from deepspeed.utils import safe_get_full_fp32_param

    state = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            if is_zero3_parameter(parameter):
                full = safe_get_full_fp32_param(parameter).detach().reshape(full_shape(parameter))
                state[name] = full.to(dtype=parameter.dtype, device="cpu", copy=True)
            else:
                state[name] = parameter.detach().to("cpu", copy=True)
    return state


class ZeroStage3Backend(Backend):
    """DeepSpeed ZeRO-3: a partitioned parameter is an empty tensor with ``p.grad`` None; values and gradients live
    in DeepSpeed's optimizer (module docstring). A checkpoint would need the optimizer's full state through torch's
    state-dict API, which does not read DeepSpeed's partitioned optimizer; accelerate's ``backward`` runs
    ``engine.step()``."""

    name = "zero3"
    title = "DeepSpeed ZeRO-3"
    saves_training_state = False
    steps_in_backward = True

    @classmethod
    def handles(cls, distributed_type: Any) -> bool:
        return distributed_type == DistributedType.DEEPSPEED  # stage 3: check_full_gradients refuses the others

    def check_per_example(self) -> None:
        raise RuntimeError(
            "per-example gradients (a per-example score such as fisher_per_example, or task_gradient_only) are "
            "not supported under DeepSpeed ZeRO-3: their backward hooks read lora_A/lora_E/lora_B, which ZeRO-3 "
            "partitions and may have released by then, so the scores would be wrong. Use a mini-batch score (e.g. "
            "sensitivity) with task_gradient_only=False, or train without DeepSpeed (DDP or FSDP2)."
        )

    def parameter_access(self) -> ParameterAccess:
        return DeepSpeedAccess()

    def numel(self, parameter: nn.Parameter) -> int:
        return full_numel(parameter)

    def trainable_state(self, model: nn.Module) -> dict[str, Tensor]:
        return zero3_trainable_state(model)

    def training_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        raise ValueError("checkpoints are not supported under DeepSpeed ZeRO-3: set checkpoint_every=0.")

    def load_training_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        raise ValueError("--resume is not supported under DeepSpeed ZeRO-3: start the run again without it.")

    def nonfinite_parameter(self, model: nn.Module) -> str | None:
        """The full gradients from DeepSpeed's optimizer (``p.grad`` is None under ZeRO-3): a collective, in
        parameter order on every process, so every process gets the same answer."""
        named = [(n, full_gradient(p)) for n, p in model.named_parameters() if p.requires_grad]
        return first_nonfinite([(n, g) for n, g in named if g is not None])


BACKENDS.register(ZeroStage3Backend.name, ZeroStage3Backend)
