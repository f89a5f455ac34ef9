"""Answer extraction from start/end logits, vectorised over every feature and every n-best pair at once.

The algorithm is the usual one for extractive QA (as in transformers' ``utils_qa.postprocess_qa_predictions``):

* per feature, the ``n_best`` highest start logits and the ``n_best`` highest end logits form n_best² candidate spans
  (s, e) with score ``start[s] + end[e]``; a span is valid when both tokens lie in the context, e ≥ s,
  e − s + 1 ≤ ``max_answer_length`` and its text is not empty;
* an example's answer is its best valid span over all of its features (ties: the first feature, then the higher
  ranked start, then the higher ranked end, i.e. the reference's stable order);
* SQuAD v2.0: the null score of a feature is ``start[cls] + end[cls]``; the example's null score is the minimum over
  its features, and ``null_odds = null − start[s*] − end[e*]`` for the best span (s*, e*). The answer is ``""`` when
  ``null_odds > null_threshold``.

Here the n_best × n_best candidates of all features are one (F, n, n) tensor, and the best feature per example is a
``scatter_reduce``; Python only slices the answer texts. An example without any valid span answers ``""`` (the
reference writes the placeholder text "empty"), with null odds = its null score.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["ExtractedAnswers", "extract_answers"]


@dataclass(frozen=True)
class ExtractedAnswers:
    answers: dict[str, str]
    """Question id → answer text (``""`` = no answer, v2.0); the file ``predictions.json``."""
    best_spans: dict[str, str]
    """Question id → best non-null span text, before the null threshold."""
    null_odds: dict[str, float] | None
    """v2.0: question id → null score − best span score; the file ``null_odds.json``."""


def _segment_reduce(values: torch.Tensor, segments: torch.Tensor, count: int, reduce: str, fill: float):
    out = torch.full((count,), fill, dtype=values.dtype)
    return out.scatter_reduce(0, segments, values, reduce=reduce, include_self=False)


def extract_answers(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    *,
    context_mask: torch.Tensor,
    offsets: torch.Tensor,
    feature_example: torch.Tensor,
    example_ids: list[str],
    contexts: list[str],
    cls_index: torch.Tensor | None = None,
    n_best: int = 20,
    max_answer_length: int = 30,
    version_2: bool = False,
    null_threshold: float = 0.0,
) -> ExtractedAnswers:
    """Answers of ``len(example_ids)`` examples from the logits of their F features (see the module doc).

    Shapes: logits and ``context_mask`` (F, L); ``offsets`` (F, L, 2) character spans in the example's context;
    ``feature_example`` (F,) the example index of each feature; ``cls_index`` (F,) the CLS position (default 0).
    """
    features, length = start_logits.shape
    if end_logits.shape != (features, length) or context_mask.shape != (features, length):
        raise ValueError(f"logits and context mask must share the shape (features, length); got {features, length}.")
    if offsets.shape != (features, length, 2) or feature_example.shape != (features,):
        raise ValueError("offsets must be (features, length, 2) and feature_example (features,).")
    if n_best < 1 or max_answer_length < 1:
        raise ValueError("n_best and max_answer_length must be at least 1.")
    examples = len(example_ids)
    start_logits, end_logits = start_logits.float(), end_logits.float()
    k = min(n_best, length)
    start_values, start_index = start_logits.topk(k, dim=1)  # (F, k), best first
    end_values, end_index = end_logits.topk(k, dim=1)
    span_start = offsets[..., 0].gather(1, start_index)[:, :, None]  # character start of each candidate start
    span_end = offsets[..., 1].gather(1, end_index)[:, None, :]
    width = end_index[:, None, :] - start_index[:, :, None]
    valid = (
        context_mask.gather(1, start_index)[:, :, None]
        & context_mask.gather(1, end_index)[:, None, :]
        & (width >= 0)
        & (width < max_answer_length)
        & (span_end > span_start)
    )
    pair_scores = (start_values[:, :, None] + end_values[:, None, :]).masked_fill(~valid, float("-inf"))
    feature_best, flat = pair_scores.view(features, -1).max(dim=1)  # first maximum in (start rank, end rank) order
    example_best = _segment_reduce(feature_best, feature_example, examples, "amax", float("-inf"))
    positions = torch.arange(features)
    is_winner = (feature_best == example_best[feature_example]) & torch.isfinite(feature_best)
    winner = _segment_reduce(torch.where(is_winner, positions, features), feature_example, examples, "amin", features)
    found = winner < features
    winner = winner.clamp(max=features - 1)
    start_rank, end_rank = flat[winner] // k, flat[winner] % k
    char_start = span_start[winner, start_rank, 0].tolist()
    char_end = span_end[winner, 0, end_rank].tolist()
    best_spans = {
        qid: contexts[i][char_start[i] : char_end[i]] if found[i] else "" for i, qid in enumerate(example_ids)
    }
    if not version_2:
        return ExtractedAnswers(dict(best_spans), best_spans, None)

    cls = torch.zeros(features, dtype=torch.long) if cls_index is None else cls_index.long()
    null_scores = start_logits[positions, cls] + end_logits[positions, cls]
    example_null = _segment_reduce(null_scores, feature_example, examples, "amin", float("inf"))
    span_start_logit = torch.where(found, start_values[winner, start_rank], 0.0)
    span_end_logit = torch.where(found, end_values[winner, end_rank], 0.0)
    odds = (example_null - span_start_logit - span_end_logit).tolist()
    answers = {
        qid: "" if (odds[i] > null_threshold or not found[i]) else best_spans[qid] for i, qid in enumerate(example_ids)
    }
    return ExtractedAnswers(answers, best_spans, dict(zip(example_ids, odds, strict=True)))
