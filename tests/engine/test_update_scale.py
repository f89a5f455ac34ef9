"""The update scale c as a setting of its own: one meaning for LoRA (α / r), SVD-LoRA (α / target_r) and AdaLoRA
(α / init_r), the precedence of the two ways of giving it, and saved adapters that stock PEFT reloads at c."""

from __future__ import annotations

import json

import pytest
import yaml
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

from adalora_scores.cli import main
from adalora_scores.config import TrainConfig, effective_update_scale, scale_rank
from adalora_scores.presets.overrides import resolve_config


@pytest.mark.parametrize(
    ("method", "rank"), [("lora", 4), ("svd_lora", 4), ("adalora", 6)], ids=["lora", "svd_lora", "adalora"]
)
def test_update_scale_sets_alpha_from_the_methods_rank(method, rank):
    config = TrainConfig(task="rte", method=method, init_r=6, target_r=4, update_scale=1.5)
    assert scale_rank(method, 6, 4) == rank
    assert config.lora_alpha == pytest.approx(1.5 * rank)
    assert effective_update_scale(config.to_dict()) == pytest.approx(1.5)
    # without update_scale, c follows from lora_alpha: 12 / rank
    assert effective_update_scale(
        TrainConfig(task="rte", method=method, init_r=6, target_r=4, lora_alpha=12).to_dict()
    ) == (pytest.approx(12 / rank))


def test_an_old_config_without_update_scale_reads_its_scale_from_alpha():
    assert effective_update_scale({"method": "adalora", "init_r": 12, "target_r": 8, "lora_alpha": 32}) == 32 / 12
    assert effective_update_scale({"method": "lora", "target_r": 8, "lora_alpha": 16}) == 2.0
    assert effective_update_scale({}) == 32.0 / 16  # every field at its default


def test_giving_both_is_an_error_that_names_the_fix():
    with pytest.raises(ValueError, match="lora_alpha=16 and update_scale=2 are both given.*give only one"):
        TrainConfig(task="rte", lora_alpha=16, update_scale=2.0)
    with pytest.raises(ValueError, match="both given; they set the same thing"):
        resolve_config(None, None, {"task": "rte"}, ["update_scale=2", "lora_alpha=3"])
    with pytest.raises(ValueError, match="update_scale must be > 0"):
        TrainConfig(task="rte", update_scale=0.0)
    # the same value both ways is no conflict (a saved config.yaml holds both)
    saved = TrainConfig(task="rte", method="lora", target_r=8, update_scale=2.0).to_dict()
    assert TrainConfig(**saved).lora_alpha == 16.0


def test_a_higher_level_replaces_the_other_way_of_giving_the_scale():
    # the preset gives rte lora_alpha 32 (init_r 16): an override of update_scale replaces it, and back
    assert resolve_config("paper-glue", "rte", {"task": "rte"}, []).lora_alpha == 32
    assert resolve_config("paper-glue", "rte", {"task": "rte"}, ["update_scale=0.5"]).lora_alpha == 8.0
    config = resolve_config(None, "rte", {"task": "rte", "update_scale": 1.0}, ["lora_alpha=3"])
    assert (config.lora_alpha, config.update_scale) == (3.0, None)


def _scales(model) -> dict[str, float]:
    """c of every adapted module of a stock-PEFT model, as its forward applies it."""
    found = {}
    for name, module in model.named_modules():
        scaling = getattr(module, "scaling", None)
        if not isinstance(scaling, dict) or "default" not in scaling:
            continue
        ranknum = getattr(module, "ranknum", None)
        if ranknum is not None and "default" in ranknum:  # AdaLoRA: scaling / (ranknum + 1e-5)
            found[name] = float(scaling["default"]) / (float(ranknum["default"]) + 1e-5)
        else:  # LoRA: lora_alpha / r
            found[name] = float(scaling["default"])
    return found


@pytest.mark.parametrize("method", ["lora", "svd_lora", "adalora"])
def test_a_saved_adapter_reloads_in_stock_peft_at_the_scale(method, glue_root, tiny_model_dir, tmp_path):
    run = tmp_path / method
    arguments = ["--task", "rte", "--model", str(tiny_model_dir), "--data", str(glue_root / "rte"), "--output"]
    settings = ["num_epochs=1", "batch_size=8", "init_r=6", "target_r=4", "update_scale=1.5", "budget_warmup=1"]
    settings += ["budget_final=1", "mask_interval=1", f"method={method}"]
    assert main(["train", *arguments, str(run), *settings]) == 0
    saved = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert saved["lora_alpha"] == pytest.approx(1.5 * (6 if method == "adalora" else 4))
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["update_scale"] == 1.5 and effective_update_scale(recorded) == pytest.approx(1.5)
    base = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2)
    scales = _scales(PeftModel.from_pretrained(base, run / "adapter"))
    assert scales and all(value == pytest.approx(1.5, rel=1e-5) for value in scales.values()), scales
