"""The model both benchmarks measure: DeBERTa-v3-base shaped (random weights) with AdaLoRA on q/k/v/o/f1/f2."""

from __future__ import annotations

from peft import AdaLoraConfig, get_peft_model
from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

from adalora_scores.adapter.peft.targets import target_modules_for


def deberta_v3_adalora(small: bool, **schedule):
    """12 layers, hidden 768 (384 with ``small``), vocabulary 128,100; init rank 16 → 8 on all 72 matrices.

    ``schedule`` sets AdaLoraConfig's total_step/tinit/tfinal/deltaT.
    """
    width = 384 if small else 768
    config = DebertaV2Config(
        vocab_size=128100,
        hidden_size=width,
        intermediate_size=4 * width,
        num_attention_heads=width // 64,
        num_hidden_layers=12,
        relative_attention=True,
        position_buckets=256,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        share_att_key=True,
        norm_rel_ebd="layer_norm",
        max_relative_positions=-1,
    )
    adalora = AdaLoraConfig(
        init_r=16,
        target_r=8,
        lora_alpha=16,
        target_modules=target_modules_for("deberta-v2"),
        modules_to_save=["classifier", "pooler"],
        task_type="SEQ_CLS",
        **schedule,
    )
    return get_peft_model(DebertaV2ForSequenceClassification(config), adalora)
