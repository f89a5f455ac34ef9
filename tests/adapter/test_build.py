"""The models the engine trains: AdaLoRA's orthogonal regulariser is really in the training loss."""

from __future__ import annotations

import pytest
import torch

from adalora_scores.adapter.peft.build import build_adapted_model
from adalora_scores.config import TrainConfig
from adalora_scores.demo.tiny_models import tiny_config, tiny_model
from adalora_scores.engine.adapter import adapter_spec


def _regulariser(model) -> torch.Tensor:
    """AdaLoRA's R(P, Q) = mean over the lora_A (Q) and lora_B (P) matrices of ‖QQᵀ − I‖_F and ‖PᵀP − I‖_F
    (Zhang et al., ICLR 2023, eq. 4 as PEFT implements it), computed here independently."""
    terms = []
    for name, parameter in model.named_parameters():
        if "lora_A.default" in name:
            terms.append(torch.linalg.matrix_norm(parameter @ parameter.T - torch.eye(parameter.shape[0])))
        elif "lora_B.default" in name:
            terms.append(torch.linalg.matrix_norm(parameter.T @ parameter - torch.eye(parameter.shape[1])))
    return torch.stack(terms).mean()


@pytest.mark.parametrize("method", ["adalora", "svd_lora"])
@pytest.mark.parametrize("head", ["sequence-classification", "question-answering"])
def test_the_training_loss_includes_the_orthogonal_regulariser(head, method):
    base = tiny_model(
        tiny_config("bert", vocab_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0), head=head
    )
    heads = ("classifier", "pooler") if head == "sequence-classification" else ("qa_outputs",)
    config = TrainConfig(
        task="rte" if head == "sequence-classification" else "squad",
        init_r=4,
        target_r=2,
        orth_reg_weight=0.5,
        method=method,
    )
    adapted = build_adapted_model(base, adapter_spec(config, 20, heads))
    ranks = {parameter.shape[0] for name, parameter in adapted.model.named_parameters() if "lora_E" in name}
    assert ranks == {4 if method == "adalora" else 2}  # SVD-LoRA: every matrix at target_r, never allocated
    assert (adapted.allocator is None) == (method == "svd_lora")
    model = adapted.model.eval()
    generator = torch.Generator().manual_seed(0)
    inputs = {"input_ids": torch.randint(5, 64, (4, 10), generator=generator)}
    if head == "sequence-classification":
        labels = {"labels": torch.tensor([0, 1, 1, 0])}
        logits = model(**inputs).logits
        task_loss = torch.nn.functional.cross_entropy(logits, labels["labels"])
    else:
        labels = {"start_positions": torch.tensor([1, 2, 3, 4]), "end_positions": torch.tensor([2, 3, 5, 6])}
        outputs = model(**inputs)
        task_loss = (
            torch.nn.functional.cross_entropy(outputs.start_logits, labels["start_positions"])
            + torch.nn.functional.cross_entropy(outputs.end_logits, labels["end_positions"])
        ) / 2
    loss = model(**inputs, **labels).loss
    regulariser = _regulariser(model)
    assert regulariser > 0.1  # P and Q start far from orthogonal: a missing term would show
    # PEFT adds the same two float32 terms inside forward, possibly after other roundings: a few eps of an O(1) loss
    torch.testing.assert_close(loss, task_loss + 0.5 * regulariser, rtol=1e-5, atol=1e-6)


def test_the_lora_baseline_has_no_regulariser():
    base = tiny_model(tiny_config("bert", vocab_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    config = TrainConfig(task="rte", method="lora", target_r=2, orth_reg_weight=0.5)
    model = build_adapted_model(base, adapter_spec(config, 20, ("classifier", "pooler"))).model.eval()
    inputs = {"input_ids": torch.randint(5, 64, (4, 10), generator=torch.Generator().manual_seed(0))}
    labels = torch.tensor([0, 1, 1, 0])
    expected = torch.nn.functional.cross_entropy(model(**inputs).logits, labels)
    torch.testing.assert_close(model(**inputs, labels=labels).loss, expected)
