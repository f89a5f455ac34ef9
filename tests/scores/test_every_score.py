"""Registry-wide tests: every registered score trains, keeps the target budget, round-trips its state, and
produces an adapter that stock PEFT reloads. A newly registered score is tested here for free."""

from __future__ import annotations

import copy

import pytest
import torch
from _tiny import batches, tiny_adalora, tiny_bert, train
from peft import PeftModel

import adalora_scores


@pytest.fixture(scope="module")
def data():
    return batches(30)


@pytest.mark.parametrize("name", adalora_scores.list_scores())
def test_training_reaches_target_budget_and_reloads_in_peft(name, data, tmp_path):
    model = tiny_adalora(total_step=30, tinit=3, tfinal=6, deltaT=2)
    allocator = adalora_scores.attach(model, score=name)
    train(model, data)

    # the final pattern keeps b(T) = target_r × matrices triplets (fewer only if scores tie at the threshold)
    target = model.peft_config["default"].target_r * len(allocator.layout.matrices)
    kept = sum(allocator.ranks().values())
    if kept != target:
        event = allocator.last_event
        ties = int((allocator.triplet_scores() == event.threshold).sum())
        assert kept < target and ties > 1, f"{name}: kept {kept} of target {target} without ties"
    assert allocator.frozen
    pattern = model.peft_config["default"].rank_pattern
    assert sum(sum(v) for v in pattern.values()) == kept
    keep = torch.cat([torch.tensor(v) for v in allocator.rank_pattern().values()])
    values = torch.cat([m.value.detach().view(-1) for m in allocator.layout.matrices])
    assert torch.all(values[~keep] == 0)

    # stock save_pretrained / PeftModel.from_pretrained: pruned ranks and identical outputs
    model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(tiny_bert(0), tmp_path)
    model.eval()
    reloaded.eval()
    for matrix_name, rank in allocator.ranks().items():
        module_path = matrix_name.rsplit(".lora_E.", 1)[0]
        module = reloaded.base_model.model.get_submodule(module_path)
        assert module.lora_E["default"].shape[0] == rank
    batch = {k: v for k, v in data[0].items() if k != "labels"}
    with torch.no_grad():
        torch.testing.assert_close(reloaded(**batch).logits, model(**batch).logits, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", adalora_scores.list_scores())
def test_allocator_state_round_trip(name, data, tmp_path):
    model = tiny_adalora(total_step=30, tinit=3, tfinal=6, deltaT=2)
    allocator = adalora_scores.attach(model, score=name)
    train(model, data[:12])  # stop mid-budgeting
    path = tmp_path / "allocator.pt"
    torch.save(allocator.state_dict(), path)

    twin = copy.deepcopy(model)
    restored = adalora_scores.attach(twin, score=name)
    restored.load_state_dict(torch.load(path, weights_only=True))
    assert restored.step == allocator.step == 12
    assert torch.equal(restored.keep, allocator.keep)
    torch.testing.assert_close(restored.triplet_scores(), allocator.triplet_scores(), rtol=0, atol=0)

    # both continue identically: same decisions at every later step
    for m in (model, twin):
        optimizer_free_continue(m, data[12:], start=13)
    assert restored.rank_pattern() == allocator.rank_pattern()


def optimizer_free_continue(model, data, start):
    """Continue with SGD (stateless), so the only state carried over is the model and the allocator."""
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    for step, batch in enumerate(data, start=start):
        model(**batch).loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
