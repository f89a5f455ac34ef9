"""The control scores: ``random`` keeps nested sets drawn from the run's seed, ``random_redrawn`` changes its mind at
every allocation, and neither moves any other random stream."""

from __future__ import annotations

import pytest
import torch
from _tiny import batches, tiny_adalora, train

import adalora_scores
from adalora_scores.allocation.ranking import churn
from adalora_scores.config import TrainConfig
from adalora_scores.scores.controls import RandomPriority


def kept_sets(name: str, seed: int | None = 7, steps: int = 30) -> tuple[list[frozenset[int]], object]:
    """Train a tiny AdaLoRA with the control and return the kept set after every allocation."""
    model = tiny_adalora(total_step=steps, tinit=3, tfinal=6, deltaT=2)
    allocator = adalora_scores.attach(model, score=name, seed=seed)
    sets: list[frozenset[int]] = []

    def record(step, _model):
        event = allocator.last_event
        if event is not None and event.step == step and not allocator.frozen:
            sets.append(frozenset(torch.nonzero(allocator.keep).view(-1).tolist()))

    train(model, batches(steps), on_step=record)
    return sets, allocator


def test_random_keeps_nested_sets_ranked_by_its_priorities():
    sets, allocator = kept_sets("random")
    assert len(sets) >= 5
    sizes = [len(s) for s in sets]
    assert sizes == sorted(sizes, reverse=True) and sizes[0] > sizes[-1]  # the budget fell
    for before, after in zip(sets, sets[1:], strict=False):
        assert after <= before  # nested: it only prunes
        assert churn(before, after) == 0.0
    # S_i is the priority itself (P and Q entries carry 0), one U(0, 1) value per triplet
    scores = allocator.triplet_scores()
    assert torch.all((scores > 0) & (scores < 1))
    assert scores.unique().numel() == allocator.layout.num_triplets
    final = frozenset(torch.topk(scores, len(sets[-1])).indices.tolist())
    assert final == sets[-1]
    # the priorities are what the score is: the freeze keeps them
    assert allocator.frozen and torch.equal(allocator.triplet_scores(), scores)


def test_random_depends_on_the_seed_only():
    first, _ = kept_sets("random", seed=7)
    again, _ = kept_sets("random", seed=7)
    other, _ = kept_sets("random", seed=8)
    assert first == again
    assert first[-1] != other[-1]


def test_random_redrawn_changes_its_mind():
    sets, _ = kept_sets("random_redrawn")
    churns = [churn(before, after) for before, after in zip(sets, sets[1:], strict=False)]
    assert sum(c > 0 for c in churns) >= len(churns) - 1  # new priorities at (almost) every allocation
    assert max(churns) > 0.1


@pytest.mark.parametrize("name", ["random", "random_redrawn"])
def test_controls_move_no_other_random_stream(name):
    """Drawing the priorities leaves torch's global generator untouched: dropout and data order are those of every
    other score on the same seed."""
    model = tiny_adalora(total_step=30, tinit=3, tfinal=6, deltaT=2)
    before = torch.get_rng_state()
    allocator = adalora_scores.attach(model, score=name, seed=3)
    allocator.mask_to_budget(allocator.initial_budget // 2)
    assert torch.equal(torch.get_rng_state(), before)


@pytest.mark.parametrize(("options", "expected"), [({}, 5), ({"seed": 11}, 11)])
def test_build_adalora_seeds_the_control(options, expected):
    from _tiny import tiny_bert

    from adalora_scores.adapter.peft.build import build_adalora
    from adalora_scores.engine.adapter import adapter_spec

    config = TrainConfig(task="sst2", score="random", seed=5, score_options=options, init_r=4, target_r=2)
    _, allocator = build_adalora(tiny_bert(0), adapter_spec(config, 20, ("classifier", "pooler")))
    assert isinstance(allocator.score, RandomPriority)
    assert allocator.score.seed == expected
    assert allocator.state_dict()["score_options"] == {"seed": expected}


@pytest.mark.parametrize("seed", [-1, 1.5, True, "7"])
def test_bad_seed_says_what_to_give(seed):
    with pytest.raises(ValueError, match="non-negative integer"):
        RandomPriority(seed=seed)
