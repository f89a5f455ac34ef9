"""attach(): validation, the Trainer callback, robustness to PEFT's known failure modes."""

from __future__ import annotations

import warnings

import pytest
import torch
from _tiny import BERT_TARGETS, ListDataset, batches, tiny_adalora, tiny_bert, train
from peft import LoraConfig, get_peft_model
from transformers import Trainer, TrainingArguments

import adalora_scores
from adalora_scores.scores.fisher import Fisher


def test_attach_replaces_peft_allocator():
    model = tiny_adalora()
    allocator = adalora_scores.attach(model, score="fisher", beta=0.9)
    assert model.base_model.rankallocator is allocator
    assert allocator.score.beta == 0.9
    assert len(allocator.layout.matrices) == 12  # 6 targets × 2 layers
    assert allocator.initial_budget == 48 and allocator.target_budget == 24


def test_attach_takes_betas_from_the_adalora_config():
    model = tiny_adalora()
    model.peft_config["default"].beta1 = 0.7
    allocator = adalora_scores.attach(model, score="sensitivity")
    assert allocator.score.beta1 == 0.7


def test_attach_accepts_a_score_class_or_instance():
    assert isinstance(adalora_scores.attach(tiny_adalora(), score=Fisher).score, Fisher)
    instance = Fisher(beta=0.5)
    assert adalora_scores.attach(tiny_adalora(), score=instance).score is instance


def test_not_an_adalora_model():
    lora = get_peft_model(tiny_bert(), LoraConfig(r=4, target_modules=BERT_TARGETS))
    with pytest.raises(TypeError, match="expected a PEFT AdaLoRA model.*get_peft_model"):
        adalora_scores.attach(lora)
    with pytest.raises(TypeError, match="expected a PEFT AdaLoRA model"):
        adalora_scores.attach(tiny_bert())


def test_unknown_score():
    with pytest.raises(KeyError, match="unknown score 'fisherr'.*Did you mean 'fisher'"):
        adalora_scores.attach(tiny_adalora(), score="fisherr")


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("target_r", 8, "target_r \\(8\\) is above init_r \\(4\\)"),
        ("tinit", 55, "no budgeting phase"),
        ("deltaT", 0, "deltaT"),
    ],
)
def test_bad_schedule_is_rejected_before_training(field, value, message):
    model = tiny_adalora()
    setattr(model.peft_config["default"], field, value)
    with pytest.raises(ValueError, match=message):
        adalora_scores.attach(model)


def test_missing_gradient_names_the_fix():
    model = tiny_adalora()
    adalora_scores.attach(model)
    with pytest.raises(RuntimeError, match="before optimizer.zero_grad"):
        model.base_model.update_and_allocate(1)


def test_final_phase_without_final_step_allocates_instead_of_crashing():
    # PEFT issue #855: steps counted in other units skip T − t_f; PEFT then fails on rank_pattern=None
    model = tiny_adalora(total_step=20, tinit=2, tfinal=5, deltaT=100)
    allocator = adalora_scores.attach(model)
    data = batches(20)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-2)
    for step in [*range(1, 15), 17, 18]:  # jumps over step 15 = T − t_f
        model(**data[step - 1]).loss.backward()
        optimizer.step()
        if step == 17:
            with pytest.warns(UserWarning, match="without the final allocation"):
                model.base_model.update_and_allocate(step)
        else:
            model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
    assert sum(allocator.ranks().values()) == allocator.target_budget
    assert model.peft_config["default"].rank_pattern == allocator.rank_pattern()


def test_without_reactivation_pruned_triplets_stay_pruned():
    model = tiny_adalora(total_step=40, tinit=2, tfinal=5, deltaT=1)
    allocator = adalora_scores.attach(model, score="fisher", reactivation=False)
    pruned_so_far = torch.zeros(allocator.layout.num_triplets, dtype=torch.bool)

    def on_step(step, _):
        nonlocal pruned_so_far
        assert not (allocator.keep & pruned_so_far).any(), f"a pruned triplet came back at step {step}"
        pruned_so_far = pruned_so_far | ~allocator.keep

    train(model, batches(40), on_step=on_step)
    assert pruned_so_far.sum() == allocator.initial_budget - allocator.target_budget


def test_trainer_callback_allocates_in_optimizer_steps(tmp_path):
    total = 12
    model = tiny_adalora(total_step=total, tinit=2, tfinal=3, deltaT=1)
    allocator = adalora_scores.attach(model, score="movement")
    rows = [{k: v[i] for k, v in b.items()} for b in batches(2 * total, batch_size=4) for i in range(4)]
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=total,
        learning_rate=5e-2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    final_phase_calls = []
    original = allocator.mask_using_rank_pattern
    allocator.mask_using_rank_pattern = lambda *a: (final_phase_calls.append(1), original(*a))
    trainer = Trainer(
        model=model, args=args, train_dataset=ListDataset(rows), callbacks=[adalora_scores.AllocationCallback(model)]
    )
    trainer.train()
    # once per optimizer step, 1 … T, despite accumulation: the forced allocation at T − t_f = 9, then 10, 11, 12
    assert allocator.step == total - 3
    assert len(final_phase_calls) == 3
    assert allocator.frozen
    assert sum(allocator.ranks().values()) == allocator.target_budget
    assert model.peft_config["default"].rank_pattern is not None


def test_a_model_without_task_type_warns_that_the_regulariser_is_missing():
    from peft import AdaLoraConfig, PeftModel

    config = AdaLoraConfig(init_r=4, target_r=2, total_step=20, tinit=2, tfinal=4, target_modules=BERT_TARGETS)
    model = get_peft_model(tiny_bert(), config)
    assert type(model) is PeftModel
    with pytest.warns(UserWarning, match="orthogonal regulariser .* is not in the loss"):
        adalora_scores.attach(model)
    with_task_type = tiny_adalora()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        adalora_scores.attach(with_task_type)  # task_type="SEQ_CLS": no warning
