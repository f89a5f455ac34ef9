"""With score="sensitivity", our allocator takes exactly the decisions of PEFT's RankAllocator."""

from __future__ import annotations

import copy

import pytest
import torch
from _tiny import batches, lambdas, tiny_adalora, train

import adalora_scores


@pytest.mark.parametrize("deltaT,tfinal", [(3, 10), (1, 0)])
def test_sensitivity_matches_peft_rank_allocator(deltaT, tfinal):
    total = 60
    reference = tiny_adalora(total_step=total, deltaT=deltaT, tfinal=tfinal)
    ours = copy.deepcopy(reference)
    adalora_scores.attach(ours, score="sensitivity")
    assert type(reference.base_model.rankallocator).__name__ == "RankAllocator"

    data = batches(total)
    record = {"reference": [], "ours": []}

    def recorder(key):
        def on_step(step, model):
            config = model.peft_config["default"]
            pattern = None if config.rank_pattern is None else dict(config.rank_pattern)
            record[key].append((step, lambdas(model), pattern))

        return on_step

    train(reference, data, on_step=recorder("reference"))
    train(ours, data, on_step=recorder("ours"))

    mask_steps = 0
    for (step, ref_lambda, ref_pattern), (_, our_lambda, our_pattern) in zip(
        record["reference"], record["ours"], strict=True
    ):
        for name in ref_lambda:
            assert torch.equal(ref_lambda[name], our_lambda[name]), f"λ differs at step {step}: {name}"
        assert ref_pattern == our_pattern, f"rank pattern differs at step {step}"
        if ref_pattern is not None:
            mask_steps += 1
    # masking really happened, at several steps, and pruned some triplets
    final = record["ours"][-1][2]
    assert sum(sum(v) for v in final.values()) == 2 * len(final)
    assert any(not all(v) for v in final.values())
    assert mask_steps > 5


def test_sensitivity_statistics_match_peft():
    reference = tiny_adalora()
    ours = copy.deepcopy(reference)
    allocator = adalora_scores.attach(ours)
    data = batches(8)
    train(reference, data)
    train(ours, data)
    peft_allocator = reference.base_model.rankallocator
    scores = allocator.score.element_scores(allocator.layout.gather_parameters())
    layout = allocator.layout
    for group in layout.groups:
        n = len(group.matrices)
        right = scores[group.right].view(n, group.rank, group.in_features)
        for i, matrix in enumerate(group.matrices):
            name = matrix.name.replace("lora_E", "lora_A")
            expected = peft_allocator._element_score(name)
            torch.testing.assert_close(right[i], expected, rtol=1e-5, atol=1e-12)
