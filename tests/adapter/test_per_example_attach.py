"""Per-example statistics through ``attach``: the task-only gradient, the Trainer callback, and the hooks' life."""

from __future__ import annotations

import pytest
import torch
from _per_example_models import layout_of, padded_batch, tiny_bert
from _tiny import ListDataset, batches, tiny_adalora
from test_per_example import LENGTHS, assert_close, orthogonal_regulariser_gradients
from transformers import Trainer, TrainingArguments

import adalora_scores


def test_task_gradient_only_feeds_scores_the_gradient_without_the_regulariser():
    """fisher with β = 0.5 after one step holds 0.5·g², with g = p.grad minus the regulariser's gradient (computed
    independently by autograd) under ``task_gradient_only``, and g = p.grad without it."""
    for task_only in (True, False):
        model = tiny_bert(orth_reg_weight=0.5)
        allocator = adalora_scores.attach(model, score="fisher", beta=0.5, task_gradient_only=task_only)
        model(**padded_batch(LENGTHS)).loss.backward()
        layout = layout_of(model)
        full = layout.gather_gradients().clone()
        expected = full - orthogonal_regulariser_gradients(model, layout) if task_only else full
        model.base_model.update_and_allocate(1)
        assert_close(allocator.score.second_moment, 0.5 * expected.square())
    assert not torch.allclose(full, full - orthogonal_regulariser_gradients(model, layout))  # the two differ


def test_hooks_are_removed_at_the_final_allocation_and_on_a_new_attach():
    model = tiny_adalora(total_step=8, tinit=1, tfinal=2, deltaT=1)
    allocator = adalora_scores.attach(model, score="gsnr_per_example")
    collector = allocator.per_example
    hooks = lambda: sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())  # noqa: E731
    assert collector is not None and hooks() > 0
    again = adalora_scores.attach(model, score="fisher_per_example")
    assert collector._handles == [] and again.per_example is not None  # the first attach's hooks are gone
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for step, batch in enumerate(batches(8), start=1):
        model(**batch).loss.backward()
        optimizer.step()
        model.base_model.update_and_allocate(step)
        optimizer.zero_grad()
        if step == 6:  # T − t_f: the final allocation
            assert again.per_example is None and again.frozen and hooks() == 0


def _trainer_first_moments(tmp_path, accumulation: int, batch_size: int):
    model = tiny_adalora(total_step=6, tinit=1, tfinal=2, deltaT=1)
    allocator = adalora_scores.attach(model, score="fisher_per_example")
    seen = []
    consume = allocator.per_example.consume
    allocator.per_example.consume = lambda: seen.append(consume()) or seen[-1]
    rows = [{k: v[i] for k, v in b.items()} for b in batches(6, batch_size=8) for i in range(8)]
    args = TrainingArguments(
        output_dir=str(tmp_path / str(accumulation)),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=6,
        learning_rate=1e-2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=3,
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=ListDataset(rows), callbacks=[adalora_scores.AllocationCallback(model)]
    )
    trainer.train()
    assert len(seen) == 4  # steps 1 … T − t_f
    return seen[0]


def test_the_trainer_callback_gives_the_moments_of_the_whole_accumulated_batch(tmp_path):
    one = _trainer_first_moments(tmp_path, accumulation=1, batch_size=8)
    accumulated = _trainer_first_moments(tmp_path, accumulation=2, batch_size=4)
    assert one.count == accumulated.count == 8
    assert_close(accumulated.mean, one.mean)
    assert_close(accumulated.mean_square, one.mean_square)


@pytest.mark.parametrize("score", ["fisher_per_example", "gsnr_per_example", "taylor_per_example"])
def test_per_example_scores_need_the_hooks(score):
    from adalora_scores.adapter.peft.peft_allocator import PeftRankAllocator

    model = tiny_adalora()
    allocator = adalora_scores.attach(model, score=score)
    with pytest.raises(ValueError, match="needs per-example gradients"):
        PeftRankAllocator(allocator.layout, allocator.score, model.peft_config["default"])


def test_a_step_with_one_example_is_not_observed_by_per_example_gsnr():
    from test_per_example import one_matrix_layout

    from adalora_scores.scores import GradientMoments, create_score

    score = create_score("gsnr_per_example")
    score.bind(one_matrix_layout())
    size = score.first_moment.numel()
    ones = torch.ones(size)
    with pytest.warns(UserWarning, match="needs at least 2 examples per optimizer step; a step with 1"):
        score.observe(ones, ones, GradientMoments(ones, ones, 1))
    assert score.num_updates == 0 and not score.first_moment.any()
    score.observe(ones, ones, GradientMoments(ones, 2 * ones, 2))
    assert score.num_updates == 1 and score.first_moment.any()
