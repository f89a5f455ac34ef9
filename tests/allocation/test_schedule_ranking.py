"""The cubic budget schedule and the global ranking, against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from adalora_scores.allocation import budget_schedule, budget_threshold, keep_mask, triplet_importance

SCHEDULE = dict(
    initial_budget=24, target_budget=8, budget_warmup=10, budget_final=20, total_steps=100, mask_interval=5
)


@pytest.mark.parametrize(
    "step,expected",
    [
        (0, (24, False)),
        (10, (24, False)),  # warm-up includes t_i
        (11, (int(16 * (1 - 1 / 70) ** 3 + 8), False)),  # 11 % 5 != 0
        (15, (int(16 * (1 - 5 / 70) ** 3 + 8), True)),
        (45, (int(16 * 0.5**3 + 8), True)),  # halfway: ⌊16/8 + 8⌋ = 10
        (80, (8, True)),  # T − t_f: end of budgeting, (1 − 1)³ = 0
        (81, (8, True)),  # final phase always masks
        (100, (8, True)),
    ],
)
def test_cubic_schedule_values(step, expected):
    assert budget_schedule(step, **SCHEDULE) == expected
    assert budget_schedule(45, **SCHEDULE)[0] == 10


def test_schedule_is_monotone():
    budgets = [budget_schedule(s, **SCHEDULE)[0] for s in range(101)]
    assert all(a >= b for a, b in zip(budgets, budgets[1:], strict=False))


def test_schedule_without_budgeting_phase_is_an_error():
    with pytest.raises(ValueError, match="no budgeting phase"):
        budget_schedule(1, **{**SCHEDULE, "budget_warmup": 50, "budget_final": 50})


def test_triplet_importance_by_hand():
    value = torch.tensor([[1.0, 2.0]])  # (n=1, r=2)
    left = torch.tensor([[[1.0, 0.0], [3.0, 4.0]]])  # P (n, d1=2, r=2): column means 2, 2
    right = torch.tensor([[[6.0, 0.0, 0.0], [3.0, 3.0, 3.0]]])  # Q (n, r=2, d2=3): row means 2, 3
    torch.testing.assert_close(triplet_importance(value, left, right), torch.tensor([[5.0, 7.0]]))


def test_threshold_keeps_budget_with_signed_scores():
    scores = torch.tensor([-3.0, 0.5, -0.1, 2.0, -7.0])
    threshold = budget_threshold(scores, budget=2)
    assert threshold == pytest.approx(-0.1)
    assert keep_mask(scores, threshold).tolist() == [False, True, False, True, False]


def test_ties_at_threshold_prune_all_tied_like_peft():
    scores = torch.tensor([1.0, 1.0, 1.0, 5.0])
    assert keep_mask(scores, budget_threshold(scores, budget=3)).tolist() == [False, False, False, True]


def test_full_and_empty_budgets():
    scores = torch.tensor([1.0, 2.0])
    assert budget_threshold(scores, 2) == -math.inf
    assert not keep_mask(scores, budget_threshold(scores, 0)).any()
