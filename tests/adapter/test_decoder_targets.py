"""Decoder target presets: on tiny random ``*ForCausalLM`` models, PEFT adapts exactly the attention and MLP linear
layers the preset names (counted by hand per layer), and every adapted matrix has a (layer, type) position."""

from __future__ import annotations

import re
import warnings

import pytest
from peft import AdaLoraConfig, get_peft_model

from adalora_scores.adapter.peft.build import build_adalora
from adalora_scores.adapter.peft.targets import resolve_target_modules, target_modules_for
from adalora_scores.config import TrainConfig
from adalora_scores.demo.tiny_models import DECODER_TYPES, tiny_config, tiny_model
from adalora_scores.engine.adapter import adapter_spec
from adalora_scores.engine.module_types import matrix_position

LLAMA_ALL = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
]
LLAMA_QV = ["self_attn.q_proj", "self_attn.v_proj"]
# model_type → (prefix of layer i, "all" modules per layer, "qv" modules per layer); every tiny model has 2 layers
EXPECTED = {
    **{
        kind: ("model.layers.{i}.", LLAMA_ALL, LLAMA_QV)
        for kind in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text")
    },
    "phi3": (
        "model.layers.{i}.",
        ["self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"],
        ["self_attn.qkv_proj"],
    ),
    "gpt2": ("transformer.h.{i}.", ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"], ["attn.c_attn"]),
    "opt": (
        "model.decoder.layers.{i}.",
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj", "fc1", "fc2"],
        ["self_attn.q_proj", "self_attn.v_proj"],
    ),
}
PRESET_COLUMN = {"all": 1, "qv": 2}  # where EXPECTED holds each preset


@pytest.fixture(scope="module", params=DECODER_TYPES)
def decoder(request):
    return request.param, tiny_config(request.param)


def adapted_modules(model_type: str, config, preset: str) -> list[str]:
    model = tiny_model(config, head="causal-lm")
    adalora = AdaLoraConfig(
        init_r=2,
        target_r=1,
        total_step=10,
        tinit=1,
        tfinal=2,
        task_type="CAUSAL_LM",
        target_modules=target_modules_for(model_type, preset),
        fan_in_fan_out=model_type == "gpt2",
    )
    peft_model = get_peft_model(model, adalora)
    names = [
        name.removeprefix("base_model.model.")
        for name, module in peft_model.named_modules()
        if hasattr(module, "lora_E")
    ]
    return names


@pytest.mark.parametrize("preset", ["all", "qv"])
def test_preset_adapts_exactly_the_expected_modules(decoder, preset):
    model_type, config = decoder
    assert model_type in EXPECTED, f"add the hand count for {model_type}"
    prefix, per_layer = EXPECTED[model_type][0], EXPECTED[model_type][PRESET_COLUMN[preset]]
    expected = sorted(prefix.format(i=i) + module for i in range(config.num_hidden_layers) for module in per_layer)
    names = adapted_modules(model_type, config, preset)
    assert sorted(names) == expected
    assert not any("lm_head" in n or "embed" in n or "wte" in n for n in names)


def test_every_adapted_matrix_has_a_layer_and_type(decoder):
    model_type, config = decoder
    names = adapted_modules(model_type, config, "all")
    positions = {name: matrix_position(f"{name}.lora_E.default") for name in names}
    assert None not in positions.values(), positions
    # each layer has every type once (the module types of one layer are distinct)
    for layer in range(config.num_hidden_layers):
        kinds = [kind for index, kind in positions.values() if index == layer]
        assert len(kinds) == len(set(kinds)) == len(EXPECTED[model_type][1])


def test_multimodal_gemma3_preset_leaves_the_vision_tower_out():
    pattern = re.compile(target_modules_for("gemma3"))
    assert pattern.fullmatch("model.language_model.layers.3.self_attn.q_proj")
    assert pattern.fullmatch("model.language_model.layers.0.mlp.down_proj")
    assert not pattern.fullmatch("model.vision_tower.vision_model.encoder.layers.0.self_attn.q_proj")
    assert not pattern.fullmatch("lm_head")


def test_config_names_a_preset_or_passes_modules_through():
    assert resolve_target_modules("llama", None) == target_modules_for("llama", "all")
    assert resolve_target_modules("llama", "qv") == target_modules_for("llama", "qv")
    assert resolve_target_modules("llama", ["q_proj"]) == ["q_proj"]
    assert resolve_target_modules("llama", r".*\.q_proj") == r".*\.q_proj"
    with pytest.raises(ValueError, match="unknown target-module preset 'kv'"):
        target_modules_for("llama", "kv")
    with pytest.raises(KeyError, match="no target-module preset for model_type 'mamba'"):
        target_modules_for("mamba")


def test_build_sets_fan_in_fan_out_for_gpt2_without_warnings():
    config = TrainConfig(task="sst2", target_modules="qv", init_r=2, target_r=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # PEFT warns per layer when it has to switch fan_in_fan_out itself
        model, allocator = build_adalora(tiny_model(tiny_config("gpt2"), head="causal-lm"), adapter_spec(config, 20))
    assert not [w for w in caught if "fan_in_fan_out" in str(w.message)]
    adalora = model.peft_config["default"]
    assert adalora.fan_in_fan_out and adalora.task_type == "CAUSAL_LM"
    assert sorted(m.name for m in allocator.layout.matrices) == [
        f"transformer.h.{i}.attn.c_attn.lora_E.default" for i in range(2)
    ]
    llama, _ = build_adalora(tiny_model(tiny_config("llama"), head="causal-lm"), adapter_spec(config, 20))
    assert not llama.peft_config["default"].fan_in_fan_out
