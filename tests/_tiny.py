"""Tiny random models and training loops shared by the tests (no network, no downloads)."""

from __future__ import annotations

import torch
from peft import AdaLoraConfig, get_peft_model
from transformers import BertForSequenceClassification

from adalora_scores.demo.tiny_models import tiny_config, tiny_model

BERT_TARGETS = ["query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense"]


def tiny_bert(seed: int = 0, num_labels: int = 2) -> BertForSequenceClassification:
    config = tiny_config(
        "bert",
        vocab_size=64,
        max_position_embeddings=32,
        num_labels=num_labels,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return tiny_model(config, seed=seed)


def tiny_adalora(
    seed: int = 0,
    *,
    init_r: int = 4,
    target_r: int = 2,
    total_step: int = 60,
    tinit: int = 5,
    tfinal: int = 10,
    deltaT: int = 3,
    orth_reg_weight: float = 0.3,
):
    base = tiny_bert(seed)
    config = AdaLoraConfig(
        init_r=init_r,
        target_r=target_r,
        total_step=total_step,
        tinit=tinit,
        tfinal=tfinal,
        deltaT=deltaT,
        lora_alpha=8,
        orth_reg_weight=orth_reg_weight,
        target_modules=BERT_TARGETS,
        modules_to_save=["classifier"],
        task_type="SEQ_CLS",  # PEFT adds the orthogonal regulariser only in its task models
    )
    torch.manual_seed(seed + 1)
    return get_peft_model(base, config)


def batches(num: int, seed: int = 0, batch_size: int = 8, length: int = 12):
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(num):
        input_ids = torch.randint(1, 64, (batch_size, length), generator=generator)
        # a learnable rule: the label says whether token 7 appears in the first half
        labels = (input_ids[:, : length // 2] < 20).any(dim=1).long()
        out.append({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": labels})
    return out


def train(model, data, lr: float = 5e-2, on_step=None):
    """The documented PEFT loop: backward, optimizer.step, update_and_allocate(step), zero_grad (steps 1..T)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for step, batch in enumerate(data, start=1):
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        if on_step is not None:
            on_step(step, model)
        optimizer.zero_grad()
    return model


def lambdas(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_E" in n}


class ListDataset(torch.utils.data.Dataset):
    """A list of example dicts as a map-style dataset (for ``transformers.Trainer``)."""

    def __init__(self, rows):
        self.rows = rows

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.rows[index]
