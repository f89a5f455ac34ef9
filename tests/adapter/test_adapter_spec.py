"""The adapter spec: the library builds an adapter from its own settings, and the engine turns a run config into
them (the budget phases in optimizer steps, the task's head, the accumulation count)."""

from __future__ import annotations

import pytest
from _tiny import tiny_bert

from adalora_scores.adapter.peft.build import build_adapted_model
from adalora_scores.adapter.peft.spec import AdapterSpec
from adalora_scores.config import TrainConfig
from adalora_scores.engine.adapter import adapter_spec

HEADS = ("classifier", "pooler")


def test_the_engine_turns_a_run_config_into_the_spec():
    config = TrainConfig(task="sst2", init_r=4, target_r=2, update_scale=2.0, score="random", seed=7)
    config.gradient_accumulation_steps = 3
    assert adapter_spec(config, 50, HEADS) == AdapterSpec(
        init_r=4,
        target_r=2,
        lora_alpha=8.0,  # c · init_r
        modules_to_save=HEADS,
        total_steps=50,
        budget_warmup=5,  # 0.1 and 0.2 of 50 optimizer steps
        budget_final=10,
        score="random",
        seed=7,
        loss_divisor=3,
    )
    given = TrainConfig(task="sst2", modules_to_save=["head"], budget_warmup=3, budget_final=4)
    assert adapter_spec(given, 50, HEADS).modules_to_save == ("head",)
    assert (adapter_spec(given, 50).budget_warmup, adapter_spec(given, 50).budget_final) == (3, 4)
    with pytest.raises(ValueError, match="no budgeting phase"):
        adapter_spec(given, 7)
    lora = adapter_spec(TrainConfig(task="sst2", method="lora", budget_warmup=3, budget_final=4), 7)
    assert (lora.method, lora.budget_warmup, lora.budget_final) == ("lora", 0, 0)  # no schedule, nothing to refuse


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"method": "dora"}, "method must be one of"),
        ({"init_r": 0, "target_r": 0}, "init_r must be >= 1"),
        ({"target_r": 20}, r"target_r \(20\) must be in \[0, init_r=16\]"),
        ({"method": "lora", "target_r": 0}, "method=lora needs target_r >= 1"),
        ({"lora_dropout": 1.0}, r"lora_dropout must be in \[0, 1\)"),
        ({"orth_reg_weight": -0.1}, "orth_reg_weight must be >= 0"),
        ({"beta2": 1.0}, r"beta1 and beta2 must be in \[0, 1\)"),
        ({"loss_divisor": 0}, "mask_interval and loss_divisor must be >= 1"),
    ],
)
def test_the_spec_refuses_a_bad_setting_and_says_what_is_allowed(settings, message):
    with pytest.raises(ValueError, match=message):
        AdapterSpec(**settings)


def test_an_adapter_is_built_from_a_spec_alone():
    spec = AdapterSpec(
        init_r=4, target_r=2, lora_alpha=8.0, modules_to_save=HEADS, total_steps=20, budget_warmup=2, budget_final=4
    )
    adapted = build_adapted_model(tiny_bert(0), spec)
    peft_config = adapted.model.peft_config["default"]
    assert (peft_config.init_r, peft_config.target_r, peft_config.lora_alpha) == (4, 2, 8.0)
    assert (peft_config.total_step, peft_config.tinit, peft_config.tfinal, peft_config.deltaT) == (20, 2, 4, 10)
    assert set(HEADS) <= set(peft_config.modules_to_save) and peft_config.task_type == "SEQ_CLS"
    assert adapted.allocator.score.name == "sensitivity" and adapted.budget(1) == 4 * len(adapted.ranks())
