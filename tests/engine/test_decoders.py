"""AdaLoRA on decoder LMs without a task: tiny random LLaMA, Qwen2 and GPT-2 ``*ForCausalLM`` models built by
``build_adalora`` (task_type CAUSAL_LM), every registered score, the documented PEFT loop on random tokens with
``labels = input_ids``, the target budget, and a stock-PEFT reload with identical logits. Per-example gradients of
a token-mean loss (``loss_reduction="token_mean"``) against batch-1 backward passes."""

from __future__ import annotations

import pytest
import torch
from _tolerances import assert_reordered
from peft import AdaLoraConfig, PeftModel, get_peft_model

import adalora_scores
from adalora_scores.adapter.peft.attach import find_adapted_matrices
from adalora_scores.adapter.peft.build import build_adalora
from adalora_scores.adapter.peft.targets import target_modules_for
from adalora_scores.adapter.per_example.collector import IGNORE_INDEX, PerExampleGradients
from adalora_scores.allocation.layout import TripletLayout
from adalora_scores.config import TrainConfig
from adalora_scores.demo.tiny_models import tiny_config, tiny_model
from adalora_scores.engine.adapter import adapter_spec

VOCABULARY = 64
STEPS = 12


def decoder(model_type: str, seed: int = 0):
    return tiny_model(tiny_config(model_type, vocab_size=VOCABULARY), head="causal-lm", seed=seed)


def token_batches(count: int, seed: int = 0, rows: int = 4, length: int = 10) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        input_ids = torch.randint(2, VOCABULARY, (rows, length), generator=generator)
        out.append({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "labels": input_ids})
    return out


@pytest.fixture(scope="module")
def data():
    return token_batches(STEPS)


@pytest.mark.parametrize("score", adalora_scores.list_scores())
@pytest.mark.parametrize("model_type", ["llama", "qwen2", "gpt2"])
def test_every_score_trains_a_decoder_to_budget_and_reloads_in_peft(model_type, score, data, tmp_path):
    config = TrainConfig(
        task="causal",
        score=score,
        init_r=3,
        target_r=1,
        budget_warmup=2,
        budget_final=3,
        mask_interval=2,
        lora_alpha=6,
        orth_reg_weight=0.1,
    )
    torch.manual_seed(1)
    model, allocator = build_adalora(decoder(model_type), adapter_spec(config, STEPS))
    assert model.peft_config["default"].task_type == "CAUSAL_LM"
    if allocator.per_example is not None:
        assert allocator.per_example.loss_reduction == "token_mean"
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    for step, batch in enumerate(data, start=1):  # the documented PEFT loop
        model(**batch).loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()

    target = config.target_r * len(allocator.layout.matrices)
    kept = sum(allocator.ranks().values())
    assert allocator.frozen
    assert kept == target or (
        kept < target and int((allocator.triplet_scores() == allocator.last_event.threshold).sum()) > 1
    ), f"kept {kept} of {target} without ties"
    assert sum(sum(mask) for mask in model.peft_config["default"].rank_pattern.values()) == kept

    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(decoder(model_type), tmp_path).eval()
    model.eval()
    for name, rank in allocator.ranks().items():
        module = reloaded.base_model.model.get_submodule(name.rsplit(".lora_E.", 1)[0])
        assert module.lora_E["default"].shape[0] == rank
    inputs = {"input_ids": data[0]["input_ids"], "attention_mask": data[0]["attention_mask"]}
    with torch.no_grad():
        expected = model(**inputs).logits
        torch.testing.assert_close(reloaded(**inputs).logits, expected, rtol=1e-5, atol=1e-6)
        assert not torch.allclose(decoder(model_type)(**inputs).logits, expected)  # the adapter changed the model


# -- per-example gradients of a token-mean loss --------------------------------------------------------------------


def llama_adalora():
    """A tiny LLaMA with random O(1) adapter entries (PEFT starts at λ = 0, where P and Q get no gradient)."""
    config = AdaLoraConfig(
        init_r=3,
        target_r=2,
        total_step=20,
        tinit=2,
        tfinal=4,
        deltaT=2,
        lora_alpha=6,
        orth_reg_weight=0.0,
        target_modules=target_modules_for("llama"),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(decoder("llama"), config).train()
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model, TripletLayout(find_adapted_matrices(model.base_model, "default"))


# rows of different lengths (right padding, labels -100), a row whose first 3 tokens are a prompt outside the loss,
# and a one-token row without any labelled token (the labels are shifted by one), which is no example
LENGTHS = [9, 4, 7, 1, 6]
PROMPT = {2: 3}


def padded_lm_batch(seed: int = 5) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    width = max(LENGTHS)
    input_ids = torch.randint(2, VOCABULARY, (len(LENGTHS), width), generator=generator)
    mask = (torch.arange(width) < torch.tensor(LENGTHS).unsqueeze(1)).long()
    labels = input_ids.masked_fill(mask == 0, IGNORE_INDEX)
    for row, prompt in PROMPT.items():
        labels[row, :prompt] = IGNORE_INDEX
    return {"input_ids": input_ids * mask, "attention_mask": mask, "labels": labels}


def batch_one_gradients(model, layout: TripletLayout, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(examples, numel): one backward per row with a labelled token, trimmed to its length (no padding); each is
    the gradient of the mean loss over that row's own tokens."""
    rows = []
    for row, length in enumerate(LENGTHS):
        if (batch["labels"][row, 1:length] != IGNORE_INDEX).sum() == 0:
            continue
        example = {key: value[row : row + 1, :length] for key, value in batch.items()}
        model.zero_grad()
        model.base_model.model(**example).loss.backward()
        rows.append(layout.gather_gradients().clone())
    model.zero_grad()
    return torch.stack(rows)


def assert_close(got: torch.Tensor, expected: torch.Tensor) -> None:
    """Batched per-example products against batch-1 backward passes: the same sums in other orders, of at most
    tokens × the widest layer (the tiny LLaMA's intermediate 32) products per gradient entry."""
    assert_reordered(got, expected, max(LENGTHS) * 32)


@pytest.fixture(scope="module")
def llama_reference():
    model, layout = llama_adalora()
    batch = padded_lm_batch()
    reference = batch_one_gradients(model, layout, batch)
    assert reference.shape[0] == len(LENGTHS) - 1
    assert reference.abs().amax(dim=0).gt(0).all()  # every entry (λ, P, Q of every matrix) is checked
    return model, layout, batch, reference


def test_token_mean_moments_match_batch_one_backward_passes(llama_reference):
    model, layout, batch, reference = llama_reference
    with PerExampleGradients(model, layout, loss_reduction="token_mean") as collector:
        model(**batch).loss.backward()
        moments = collector.consume()
    assert moments.count == reference.shape[0]
    assert_close(moments.mean, reference.mean(0))
    assert_close(moments.mean_square, reference.square().mean(0))
    # the batch gradient weights each sequence by its labelled tokens: T_n / T, not 1 / N
    tokens = (batch["labels"][:, 1:] != IGNORE_INDEX).sum(1)
    weights = (tokens[tokens > 0] / tokens.sum()).float()
    assert_close(layout.gather_gradients(), weights @ reference)
    assert not torch.allclose(layout.gather_gradients(), reference.mean(0), rtol=1e-3)
    model.zero_grad()


def test_token_mean_with_accumulation_loss_scale_and_num_items_in_batch(llama_reference):
    """Two micro-batches whose summed token losses are divided by the step's total token count (transformers'
    ``num_items_in_batch``), with fp16-style loss scaling: the same moments as one batch."""
    model, layout, batch, reference = llama_reference
    total = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    with PerExampleGradients(model, layout, loss_reduction="token_mean", loss_scale=512.0) as collector:
        for rows in (slice(0, 2), slice(2, None)):
            part = {key: value[rows] for key, value in batch.items()}
            (model(**part, num_items_in_batch=total).loss * 512.0).backward()
        moments = collector.consume()
    assert moments.count == reference.shape[0]
    assert_close(moments.mean, reference.mean(0))
    assert_close(moments.mean_square, reference.square().mean(0))
    model.zero_grad()


def test_token_mean_needs_labels(llama_reference):
    model, layout, batch, _ = llama_reference
    with PerExampleGradients(model, layout, loss_reduction="token_mean"):
        with pytest.raises(ValueError, match="call the model with labels="):
            model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])


def test_row_mean_default_is_wrong_for_token_mean_losses(llama_reference):
    """Why the option exists: the classification default treats the loss as a mean over rows."""
    model, layout, batch, reference = llama_reference
    with PerExampleGradients(model, layout) as collector:
        model(**batch).loss.backward()
        moments = collector.consume()
    assert moments.count == len(LENGTHS)
    assert not torch.allclose(moments.mean_square, reference.square().mean(0), rtol=1e-2)
    model.zero_grad()
