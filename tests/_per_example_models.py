"""Tiny AdaLoRA models (BERT, DeBERTa-v2 with shared relative-position projections, GPT-2 with Conv1D) and a
batch-1 reference for per-example gradients."""

from __future__ import annotations

import torch
from peft import AdaLoraConfig, get_peft_model
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DebertaV2Config,
    DebertaV2ForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
)

from adalora_scores.adapter.peft.attach import find_adapted_matrices
from adalora_scores.allocation.layout import TripletLayout

VOCABULARY = 64
DEBERTA_TARGETS = (
    r".*\.layer\.\d+\.(attention\.self\.(query_proj|key_proj|value_proj)|attention\.output\.dense"
    r"|intermediate\.dense|output\.dense)"
)
BERT_TARGETS = (
    r".*\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)"
)


def _adalora(base, targets, *, lora_dropout: float, orth_reg_weight: float, **extra):
    config = AdaLoraConfig(
        init_r=3,
        target_r=2,
        total_step=20,
        tinit=2,
        tfinal=4,
        deltaT=2,
        lora_alpha=6,
        lora_dropout=lora_dropout,
        orth_reg_weight=orth_reg_weight,
        target_modules=targets,
        task_type="SEQ_CLS",
        **extra,
    )
    model = get_peft_model(base, config).train()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():  # PEFT starts at λ = 0 (no gradient on P, Q) and tiny P, Q: use random O(1) entries
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model


def tiny_bert(*, lora_dropout: float = 0.0, orth_reg_weight: float = 0.0, seed: int = 0):
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=VOCABULARY,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=32,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        attn_implementation="eager",
    )
    return _adalora(
        BertForSequenceClassification(config), BERT_TARGETS, lora_dropout=lora_dropout, orth_reg_weight=orth_reg_weight
    )


def tiny_deberta(*, seed: int = 0, position_buckets: int = 4):
    """2k = 2 × ``position_buckets`` relative-position rows: with 4, batches of up to 12 tokens use all 8; with 64,
    only the 2T − 1 of 128 around the middle get a gradient (the band the collector restricts itself to)."""
    torch.manual_seed(seed)
    config = DebertaV2Config(
        vocab_size=VOCABULARY,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=24,
        max_position_embeddings=32,
        relative_attention=True,
        position_buckets=position_buckets,
        pos_att_type=["p2c", "c2p"],
        position_biased_input=False,
        share_att_key=True,
        norm_rel_ebd="layer_norm",
        max_relative_positions=-1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pooler_dropout=0.0,
    )
    return _adalora(DebertaV2ForSequenceClassification(config), DEBERTA_TARGETS, lora_dropout=0.0, orth_reg_weight=0.0)


def tiny_gpt2(*, seed: int = 0):
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=VOCABULARY,
        n_embd=16,
        n_layer=2,
        n_head=2,
        n_positions=32,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=1,
        attn_implementation="eager",
    )
    return _adalora(
        GPT2ForSequenceClassification(config),
        ["c_attn", "c_proj", "c_fc"],
        lora_dropout=0.0,
        orth_reg_weight=0.0,
        fan_in_fan_out=True,
    )


def layout_of(model) -> TripletLayout:
    return TripletLayout(find_adapted_matrices(model.base_model, "default"))


def padded_batch(lengths: list[int], seed: int = 0, labels: int = 2) -> dict[str, torch.Tensor]:
    """Rows of token ids 1…63 padded with 0 to the longest length; labels depend on the first token."""
    generator = torch.Generator().manual_seed(seed)
    width = max(lengths)
    input_ids = torch.randint(1, VOCABULARY, (len(lengths), width), generator=generator)
    mask = (torch.arange(width) < torch.tensor(lengths).unsqueeze(1)).long()
    return {"input_ids": input_ids * mask, "attention_mask": mask, "labels": input_ids[:, 0] % labels}


def batch_one_gradients(model, layout: TripletLayout, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(N, numel) per-example gradients: one backward per example, trimmed to its own length (no padding), through
    the wrapped transformers model (so without PEFT's orthogonal regulariser)."""
    rows = []
    for row in range(batch["input_ids"].shape[0]):
        length = int(batch["attention_mask"][row].sum())
        example = {key: value[row : row + 1] for key, value in batch.items()}
        example["input_ids"] = example["input_ids"][:, :length]
        example["attention_mask"] = example["attention_mask"][:, :length]
        model.zero_grad()
        model.base_model.model(**example).loss.backward()
        rows.append(layout.gather_gradients().clone())
    model.zero_grad()
    return torch.stack(rows)


def distributed_worker(output: str, lengths: list[int], split: int) -> None:
    """One of 2 gloo processes: rank 0 back-propagates rows [0, split), rank 1 the rest; rank 0 saves the moments."""
    import torch.distributed as dist

    from adalora_scores.adapter.per_example.collector import PerExampleGradients

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = tiny_bert()
    layout = layout_of(model)
    batch = padded_batch(lengths, seed=4)
    rows = slice(0, split) if rank == 0 else slice(split, len(lengths))
    with PerExampleGradients(model, layout) as collector:
        model(**{key: value[rows] for key, value in batch.items()}).loss.backward()
        moments = collector.consume()
    if rank == 0:
        torch.save({"mean": moments.mean, "mean_square": moments.mean_square, "count": moments.count}, output)
    dist.destroy_process_group()


if __name__ == "__main__":
    import sys

    distributed_worker(sys.argv[1], [int(n) for n in sys.argv[2].split(",")], int(sys.argv[3]))
