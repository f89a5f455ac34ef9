"""The allocator follows the model to its device when the model moves after ``attach``.

The training engine attaches the allocator to the model on the CPU (PEFT must wrap the model before accelerate does),
and ``accelerator.prepare`` then moves it to the GPU: DDP and single-GPU runs by ``model.to(device)``, which keeps the
parameter objects and changes their device; FSDP2 by ``fully_shard``, which puts new parameters on the device. Before
this fix the layout's flat buffers, the score's statistics, the mask and the per-example sums stayed on the CPU, and
the first step failed on the GPU (``torch.cat(..., out=cpu_buffer)`` of CUDA gradients, or adding CUDA per-example
gradients into CPU sums).

There is no GPU here: the ``meta`` device stands in for it. A model moved to ``meta`` runs forward and backward
(shapes only), so every tensor the allocator and the per-example hooks touch must follow it, or an operation mixes
``meta`` and ``cpu`` tensors and fails exactly as ``cuda`` and ``cpu`` would. Values cannot be checked on ``meta``;
that the moved state keeps its values is checked on the CPU (``.to`` of the same device is the identity).
``scripts/gpu-check.sh`` runs the engine end to end on a GPU (``sensitivity`` and ``fisher_per_example``).
"""

from __future__ import annotations

import pytest
import torch
from _tiny import batches, tiny_adalora
from torch import nn

import adalora_scores

META = torch.device("meta")


def replace_adapter_parameters(model, device: torch.device) -> None:
    """New parameter objects on ``device`` in place of every adapter parameter, as ``fully_shard`` does."""
    for module in model.modules():
        for role in ("lora_A", "lora_E", "lora_B"):
            holder = getattr(module, role, None)
            if isinstance(holder, nn.ParameterDict):
                for name, parameter in list(holder.items()):
                    holder[name] = nn.Parameter(parameter.detach().to(device))
    model.to(device)


def allocator_tensors(allocator) -> list[torch.Tensor]:
    score = allocator.score
    tensors = [allocator.layout._buffer, allocator.layout._grad_buffer, allocator.keep, *score._workspace]
    tensors += [getattr(score, stat) for stat in score.statistics]
    if allocator.per_example is not None:
        tensors.append(allocator.per_example._sums)
    return tensors


@pytest.mark.parametrize("move", ["model.to (DDP, one GPU)", "new parameters (FSDP2)"])
@pytest.mark.parametrize("score", ["sensitivity", "fisher_per_example", "magnitude"])
def test_the_allocator_follows_a_model_moved_after_attach(score, move):
    model = tiny_adalora()
    backend = "single" if move.startswith("model.to") else "fsdp2"  # as accelerate's set-up would choose
    allocator = adalora_scores.attach(model, score=score, backend=backend)
    allocator.score.workspace(0)  # a scratch tensor, as after a first step
    if move.startswith("model.to"):
        parameters = list(allocator.layout.parameters)
        swap = torch.__future__.get_swap_module_params_on_conversion()
        torch.__future__.set_swap_module_params_on_conversion(True)  # keep the objects, as .to("cuda") does
        try:
            model.to(META)
        finally:
            torch.__future__.set_swap_module_params_on_conversion(swap)
        assert all(a is b for a, b in zip(parameters, allocator.layout.parameters, strict=True))
    else:
        replace_adapter_parameters(model, META)
    batch = {key: value.to(META) for key, value in batches(1)[0].items() if key != "attention_mask"}
    loss = model(**batch).loss
    if allocator.per_example is not None:  # the per-example sums followed the batch
        assert allocator.per_example._sums.device == META
    loss.backward()  # per-example gradients (meta) are added into the sums: they must be on meta already
    allocator.follow_model(model.base_model.model)  # what update_and_allocate does first
    assert {tensor.device for tensor in allocator_tensors(allocator)} == {META}
    layout = allocator.layout
    assert layout.device == META and all(p.device == META for p in layout.parameters)
    if score == "sensitivity":  # one step's statistics, the triplet scores and the mask, all on meta
        allocator.score.observe(layout.gather_parameters(), layout.gather_gradients())
        assert layout.triplet_scores(allocator.score.element_scores(layout.gather_parameters())).device == META
    layout.apply_keep_mask(allocator.keep)


def test_following_keeps_the_state_and_is_free_when_nothing_moved():
    model = tiny_adalora()
    allocator = adalora_scores.attach(model, score="sensitivity")
    data = batches(4)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    for step, batch in enumerate(data, start=1):
        model(**batch).loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
    before = [tensor.clone() for tensor in allocator_tensors(allocator)]
    assert not allocator.follow_parameters()  # same device: nothing to do
    allocator.layout.to("cpu")
    allocator.score.to("cpu")
    for old, new in zip(before, allocator_tensors(allocator), strict=True):
        assert torch.equal(old, new)
