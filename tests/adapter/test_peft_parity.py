"""With score="sensitivity", our allocator takes exactly the decisions of PEFT's RankAllocator, bit for bit.

Exact by construction, not by luck: ``ema_`` rounds like PEFT's ``β·avg + (1 − β)·x`` and triplet scores are summed
in PEFT's order, so element scores, triplet scores, every λ and every rank pattern are compared with ``torch.equal``
(no tolerance) at every optimizer step.
"""

from __future__ import annotations

import copy

import pytest
import torch
from _tiny import batches, lambdas, tiny_adalora, train

import adalora_scores


def _peft_triplet_scores(allocator) -> dict[str, torch.Tensor]:
    """PEFT's triplet scores, computed with its own ``_element_score`` and ``_combine_ipt`` as its
    ``mask_to_budget`` does (means of A over dim 1, of B over dim 0)."""
    scores = {}
    for name in allocator.ipt:  # PEFT's names, relative to the wrapped model
        if "lora_E.default" in name:
            right = allocator._element_score(name.replace("lora_E", "lora_A")).mean(dim=1, keepdim=True)
            left = allocator._element_score(name.replace("lora_E", "lora_B")).mean(dim=0).view(-1, 1)
            value = allocator._element_score(name)
            scores[name] = allocator._combine_ipt(value, torch.cat([right, left], dim=1))
    return scores


@pytest.mark.parametrize("deltaT,tfinal", [(3, 10), (1, 0)])
def test_sensitivity_matches_peft_rank_allocator_bit_for_bit(deltaT, tfinal):
    total = 72
    reference = tiny_adalora(total_step=total, deltaT=deltaT, tfinal=tfinal)
    ours = copy.deepcopy(reference)
    allocator = adalora_scores.attach(ours, score="sensitivity")
    assert type(reference.base_model.rankallocator).__name__ == "RankAllocator"
    peft_allocator = reference.base_model.rankallocator
    names = {p: n.removeprefix("base_model.model.") for n, p in ours.named_parameters()}
    record = {"reference": [], "ours": []}

    def on_reference_step(step, model):
        config = model.peft_config["default"]
        scored = step < total - tfinal  # PEFT resets its statistics at the final allocation
        elements = {n: peft_allocator._element_score(n).clone() for n in peft_allocator.ipt} if scored else None
        triplets = _peft_triplet_scores(peft_allocator) if scored else None
        pattern = None if config.rank_pattern is None else dict(config.rank_pattern)
        record["reference"].append((step, lambdas(model), pattern, elements, triplets))

    def on_our_step(step, model):
        config = model.peft_config["default"]
        elements = triplets = None
        if step < total - tfinal:
            flat = allocator.score.element_scores(allocator.layout.gather_parameters())
            sizes = [p.numel() for p in allocator.layout.parameters]
            elements = {
                names[p]: part.view_as(p).clone()
                for p, part in zip(allocator.layout.parameters, flat.split(sizes), strict=True)
            }
            by_matrix = allocator.layout.split_by_matrix(allocator.triplet_scores())
            triplets = {name: value.clone() for name, value in by_matrix.items()}
        pattern = None if config.rank_pattern is None else dict(config.rank_pattern)
        record["ours"].append((step, lambdas(model), pattern, elements, triplets))

    data = batches(total)
    train(reference, data, on_step=on_reference_step)
    train(ours, data, on_step=on_our_step)

    mask_steps = compared_scores = 0
    for reference_step, our_step in zip(record["reference"], record["ours"], strict=True):
        step, ref_lambda, ref_pattern, ref_elements, ref_triplets = reference_step
        _, our_lambda, our_pattern, our_elements, our_triplets = our_step
        for name in ref_lambda:
            assert torch.equal(ref_lambda[name], our_lambda[name]), f"λ differs at step {step}: {name}"
        assert ref_pattern == our_pattern, f"rank pattern differs at step {step}"
        if ref_elements is not None:
            assert set(ref_elements) == set(our_elements)
            for name, expected in ref_elements.items():
                assert torch.equal(expected, our_elements[name]), f"element scores differ at step {step}: {name}"
            for name, expected in ref_triplets.items():
                assert torch.equal(expected.view(-1), our_triplets[name]), f"triplet scores differ at {step}: {name}"
            compared_scores += 1
        mask_steps += ref_pattern is not None
    assert compared_scores >= 60  # element and triplet scores compared bit for bit at 62 or 72 steps
    final = record["ours"][-1][2]  # masking really happened, at several steps, and pruned some triplets
    assert sum(sum(v) for v in final.values()) == 2 * len(final)
    assert any(not all(v) for v in final.values())
    assert mask_steps > 5


def test_ema_rounds_like_the_reference_formula():
    """``ema_`` equals ``β·avg + (1 − β)·x`` exactly, where the fused ``add_(x, alpha=1 − β)`` would not."""
    generator = torch.Generator().manual_seed(0)
    average, value = torch.rand(100_000, generator=generator), torch.rand(100_000, generator=generator) * 1e-3
    reference = 0.85 * average + (1 - 0.85) * value
    assert torch.equal(adalora_scores.ema_(average.clone(), value, 0.85), reference)
    scratch = torch.empty_like(value)
    assert torch.equal(adalora_scores.ema_(average.clone(), value, 0.85, scratch=scratch), reference)
    fused = average.clone().mul_(0.85).add_(value, alpha=1 - 0.85)
    assert not torch.equal(fused, reference)  # the old form rounds differently somewhere: the test can fail
