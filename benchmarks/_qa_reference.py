"""A straightforward loop-based answer extraction, written here only as the comparison point for our vectorised one.

It follows the algorithm of transformers' ``examples/pytorch/question-answering/utils_qa.py``
(``postprocess_qa_predictions``): per feature, argsort the start and end logits, loop over the n_best × n_best pairs,
keep valid spans, sort an example's candidates by score, and (v2.0) compare the best non-null span with the minimum
null score over the example's features. Re-implemented, not copied.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np


def reference_answers(
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    feature_example: list[int],
    feature_offsets: list[list[tuple[int, int] | None]],
    example_ids: list[str],
    contexts: list[str],
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    version_2: bool = False,
    null_threshold: float = 0.0,
) -> tuple[dict[str, str], dict[str, float] | None]:
    """``(answers, null_odds)``; ``feature_offsets[f][t]`` is a character span, or None outside the context."""
    features_of = defaultdict(list)
    for feature, example in enumerate(feature_example):
        features_of[example].append(feature)
    answers, null_odds = {}, {}
    for example, (qid, context) in enumerate(zip(example_ids, contexts, strict=True)):
        null, candidates = None, []
        for feature in features_of[example]:
            start, end, offsets = start_logits[feature], end_logits[feature], feature_offsets[feature]
            null_score = start[0] + end[0]
            if null is None or null["score"] > null_score:
                null = {"span": (0, 0), "score": null_score, "start": start[0], "end": end[0]}
            for s in np.argsort(start)[-1 : -n_best - 1 : -1].tolist():
                for e in np.argsort(end)[-1 : -n_best - 1 : -1].tolist():
                    if s >= len(offsets) or e >= len(offsets) or offsets[s] is None or offsets[e] is None:
                        continue
                    if e < s or e - s + 1 > max_answer_length:
                        continue
                    candidates.append(
                        {
                            "span": (offsets[s][0], offsets[e][1]),
                            "score": start[s] + end[e],
                            "start": start[s],
                            "end": end[e],
                        }
                    )
        if version_2:
            candidates.append(null)
        candidates = sorted(candidates, key=lambda c: c["score"], reverse=True)[:n_best]
        if version_2 and all(c is not null for c in candidates):
            candidates.append(null)
        for candidate in candidates:
            candidate["text"] = context[candidate["span"][0] : candidate["span"][1]]
        if not candidates or (len(candidates) == 1 and candidates[0]["text"] == ""):
            candidates.insert(0, {"text": "empty", "start": 0.0, "end": 0.0, "score": 0.0})
        if not version_2:
            answers[qid] = candidates[0]["text"]
            continue
        best = next(c for c in candidates if c["text"] != "")
        difference = null["score"] - best["start"] - best["end"]
        null_odds[qid] = float(difference)
        answers[qid] = "" if difference > null_threshold else best["text"]
    return answers, (null_odds if version_2 else None)
