"""A matrix pruned to rank 0 is saved at rank 1 with λ = 0: stock PEFT loads it with the same outputs as PEFT's own
rank-0 save, and without PEFT's false "ZeRO-3 / FSDP shards were not gathered" warning."""

from __future__ import annotations

import json
import warnings

import torch
from _tiny import tiny_adalora, tiny_bert
from peft import PeftModel

import adalora_scores
from adalora_scores.adapter import save_adapter


def _pruned_model():
    """A tiny AdaLoRA model (init_r 4) whose first matrix is pruned to rank 0 and second to rank 3."""
    model = tiny_adalora()
    allocator = adalora_scores.attach(model, "sensitivity")
    with torch.no_grad():  # non-zero λ everywhere, so that the adapter changes the outputs
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.normal_()
    keep = torch.ones_like(allocator.keep)
    keep[:4] = False  # every triplet of the first matrix
    keep[5] = False  # one triplet of the second
    allocator.keep, allocator._rank_pattern = keep, None
    allocator.layout.apply_keep_mask(keep)  # λ = 0 where pruned, as an allocation does
    model.peft_config["default"].rank_pattern = allocator.rank_pattern()
    return model, allocator


def _recorded(action):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = action()
    return result, [f"{w.category.__name__}: {w.message}" for w in caught]


def _reload(folder):
    model, caught = _recorded(lambda: PeftModel.from_pretrained(tiny_bert(0), folder))
    return model.eval(), caught


def test_rank_zero_matrix_reloads_identically_without_the_sharding_alarm(tmp_path):
    model, allocator = _pruned_model()
    first, second = allocator.layout.names[:2]
    pattern = model.peft_config["default"].rank_pattern
    before = {k: v.clone() for k, v in model.state_dict().items()}

    empty, caught = _recorded(lambda: save_adapter(model, tmp_path / "ours"))
    assert empty == [first]
    assert not [w for w in caught if "PeftWarning" in w or "ZeRO-3" in w], caught
    assert model.peft_config["default"].rank_pattern is pattern  # the model in memory is unchanged
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    saved = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())["rank_pattern"]
    assert saved[first.removesuffix(".default")] == [True, False, False, False]
    assert saved[second.removesuffix(".default")] == [True, False, True, True]

    # PEFT's own save of the same model: zero-sized tensors and the false alarm (what this module avoids)
    _, caught = _recorded(lambda: model.save_pretrained(tmp_path / "stock"))
    assert any("PeftWarning" in w and "ZeRO-3" in w and "(0, 16)" in w for w in caught), caught

    ours, caught = _reload(tmp_path / "ours")
    assert not [w for w in caught if "PeftWarning" in w or "ZeRO-3" in w], caught
    stock, _ = _reload(tmp_path / "stock")
    module = ours.base_model.model.get_submodule(first.removesuffix(".lora_E.default"))
    assert module.lora_A["default"].shape == (1, 16) and module.lora_E["default"].item() == 0.0
    assert stock.base_model.model.get_submodule(first.removesuffix(".lora_E.default")).lora_A["default"].shape[0] == 0

    model.eval()
    input_ids = torch.randint(1, 64, (4, 12), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = {
            name: m(input_ids=input_ids).logits for name, m in (("ours", ours), ("stock", stock), ("live", model))
        }
        base = tiny_bert(0).eval()(input_ids=input_ids).logits
    assert torch.equal(logits["ours"], logits["stock"])  # λ = 0 adds exactly zero
    torch.testing.assert_close(logits["ours"], logits["live"], rtol=0, atol=1e-6)  # the live model sums over r=4
    assert (logits["ours"] - base).abs().max() > 1e-3  # the adapter changes the outputs (1000 × the tolerance)


def test_nothing_pruned_to_rank_zero_is_a_plain_save(tmp_path):
    model = tiny_adalora()
    assert save_adapter(model, tmp_path) == []  # no rank pattern yet
    assert (tmp_path / "adapter_model.safetensors").is_file()


def test_a_gathered_state_dict_saves_like_the_model_and_is_left_unchanged(tmp_path):
    """The engine saves the trainable state gathered by ``full_trainable_state`` (FSDP2 shards cannot be saved from
    the model); on one process that must write the same files as saving the model itself, λ = 0 rule included."""
    from safetensors.torch import load_file

    from adalora_scores.adapter.distributed.full_state import full_trainable_state

    model, allocator = _pruned_model()
    state = full_trainable_state(model)
    assert state and all("lora_" in key or "classifier" in key for key in state)  # trainable only: no frozen base
    before = {key: value.clone() for key, value in state.items()}
    assert save_adapter(model, tmp_path / "given", state_dict=state) == [allocator.layout.names[0]]
    save_adapter(model, tmp_path / "own")
    assert all(torch.equal(value, before[key]) for key, value in state.items())  # λ was zeroed in a copy
    given, own = (json.loads((tmp_path / f / "adapter_config.json").read_text()) for f in ("given", "own"))
    assert given == own
    given, own = (load_file(tmp_path / f / "adapter_model.safetensors") for f in ("given", "own"))
    assert given.keys() == own.keys() and all(torch.equal(given[key], own[key]) for key in own)
