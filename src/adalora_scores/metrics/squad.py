"""The official SQuAD v1.1 and v2.0 evaluation rules, re-implemented (no download, no ``evaluate.load``).

Rules, as in the official scripts ``evaluate-v1.1.py`` and ``evaluate-v2.0.py`` (Rajpurkar et al. 2016, 2018):

* normalise an answer: lowercase, drop punctuation (``string.punctuation``), replace the articles a/an/the by a
  space, collapse whitespace;
* EM = [normalise(prediction) == normalise(gold)]; token F1 = 2PR / (P + R) over the bag of normalised tokens;
  each question scores the maximum over its gold answers;
* v1.1: every gold answer counts, F1 is 0 when no token is shared; the score is averaged over all questions;
* v2.0: gold answers that normalise to empty are dropped and a question without one has the gold answer ``""``
  (unanswerable); F1 of two token lists of which one is empty is 1 if both are empty, else 0. With no-answer
  probabilities ``na_probs``, a question with ``na_probs[id] > na_prob_thresh`` counts as answered "no answer".
  The output holds ``exact``, ``f1``, ``total``, the ``HasAns_*``/``NoAns_*`` breakdown, and with ``na_probs`` the
  best threshold search (``best_exact``, ``best_exact_thresh``, ``best_f1``, ``best_f1_thresh``).

Values are in percent, as the official scripts print them. Unlike the official scripts, a prediction file that
misses questions or holds unknown ids is an error, not a silent zero or a crash.
"""

from __future__ import annotations

import json
import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["evaluate", "exact_score", "f1_score", "gold_answers", "normalize_answer", "score_answers"]

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, remove punctuation, replace articles by a space, collapse whitespace (the official order)."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_score(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def f1_score(gold: str, prediction: str, *, version_2: bool = True) -> float:
    """Token F1 of one gold answer; ``version_2`` selects the v2.0 rule for empty answers (see module doc)."""
    gold_tokens, predicted_tokens = normalize_answer(gold).split(), normalize_answer(prediction).split()
    if version_2 and (not gold_tokens or not predicted_tokens):
        return float(gold_tokens == predicted_tokens)
    shared = sum((Counter(gold_tokens) & Counter(predicted_tokens)).values())
    if shared == 0:
        return 0.0
    precision, recall = shared / len(predicted_tokens), shared / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def gold_answers(dataset: Mapping[str, Any] | list | str | Path) -> tuple[dict[str, list[str]], bool]:
    """``{question id: gold answer texts}`` from an official SQuAD JSON (path, parsed file, or its ``data`` list),
    and whether the file is v2.0 (a ``version`` starting with "v2" or any ``is_impossible`` field)."""
    source = str(dataset) if isinstance(dataset, str | Path) else "the dataset"
    if isinstance(dataset, str | Path):
        try:
            dataset = json.loads(Path(dataset).read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{source}: not valid JSON ({error}); expected an official SQuAD file.") from None
    version = str(dataset.get("version", "")) if isinstance(dataset, Mapping) else ""
    articles = dataset.get("data") if isinstance(dataset, Mapping) else dataset
    if not isinstance(articles, list):
        raise ValueError(f"{source}: no 'data' list; expected the official layout data → paragraphs → qas.")
    golds: dict[str, list[str]] = {}
    version_2 = version.lstrip("v").startswith("2")
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(_field(article, "paragraphs", f"{source}: data[{a}]")):
            for q, qa in enumerate(_field(paragraph, "qas", f"{source}: data[{a}].paragraphs[{p}]")):
                where = f"{source}: data[{a}].paragraphs[{p}].qas[{q}]"
                qid = str(_field(qa, "id", where))
                answers = _field(qa, "answers", where)
                if qid in golds:
                    raise ValueError(f"{where}: duplicate question id {qid!r}.")
                golds[qid] = [str(_field(answer, "text", f"{where}.answers")) for answer in answers]
                version_2 = version_2 or "is_impossible" in qa
    return golds, version_2


def _field(record: Any, key: str, where: str) -> Any:
    if not isinstance(record, Mapping) or key not in record:
        raise ValueError(f"{where}: missing {key!r}; expected the official SQuAD layout data → paragraphs → qas.")
    return record[key]


def _check_ids(golds: Mapping[str, Any], predictions: Mapping[str, Any], name: str) -> None:
    missing = [qid for qid in golds if qid not in predictions]
    unknown = [qid for qid in predictions if qid not in golds]
    if missing or unknown:
        parts = []
        if missing:
            parts.append(f"{len(missing)} question(s) without a value (e.g. {missing[:3]})")
        if unknown:
            parts.append(f"{len(unknown)} id(s) not in the dataset (e.g. {unknown[:3]})")
        raise ValueError(
            f"{name} do not match the dataset: {'; '.join(parts)}. Use the dataset file the predictions were made on."
        )


def _percent(values: Iterable[float], count: int) -> float:
    return 100.0 * sum(values) / count


def _best_threshold(
    predictions: Mapping[str, str], raw: Mapping[str, float], na_probs: Mapping[str, float], has_answer: Mapping
) -> tuple[float, float]:
    """Sweep the no-answer threshold over the sorted ``na_probs`` (the official ``find_best_thresh``).

    Questions with equal ``na_probs`` are walked in the order of ``na_probs`` itself (the order of the na_probs
    file, which ``json.load`` keeps), not the dataset's: the official script stable-sorts ``na_probs``, and the
    order of ties can change ``best_*`` and their thresholds.
    """
    score = best = sum(1 for qid in raw if not has_answer[qid])
    threshold = 0.0
    for qid in sorted(na_probs, key=lambda k: na_probs[k]):
        if has_answer[qid]:
            score += raw[qid]
        elif predictions[qid]:
            score -= 1
        if score > best:
            best, threshold = score, na_probs[qid]
    return 100.0 * best / len(raw), threshold


def score_answers(
    golds: Mapping[str, list[str]],
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
    *,
    version_2: bool = True,
) -> dict[str, float]:
    """Official metrics for ``{id: gold texts}`` and ``{id: predicted text}`` (see the module doc)."""
    if not golds:
        raise ValueError("the dataset holds no questions.")
    _check_ids(golds, predictions, "predictions")
    if not version_2:
        exact = [max(exact_score(g, predictions[q]) for g in golds[q]) if golds[q] else 0 for q in golds]
        f1 = [max(f1_score(g, predictions[q], version_2=False) for g in golds[q]) if golds[q] else 0.0 for q in golds]
        return {"exact_match": _percent(exact, len(golds)), "f1": _percent(f1, len(golds)), "total": len(golds)}
    if na_probs is not None:
        _check_ids(golds, na_probs, "no-answer probabilities")
    has_answer = {qid: bool(answers) for qid, answers in golds.items()}
    raw_exact, raw_f1 = {}, {}
    for qid, answers in golds.items():
        kept = [answer for answer in answers if normalize_answer(answer)] or [""]
        raw_exact[qid] = max(exact_score(answer, predictions[qid]) for answer in kept)
        raw_f1[qid] = max(f1_score(answer, predictions[qid]) for answer in kept)
    probs = na_probs if na_probs is not None else dict.fromkeys(golds, 0.0)

    def thresholded(raw: dict[str, float]) -> dict[str, float]:
        return {q: float(not has_answer[q]) if probs[q] > na_prob_thresh else s for q, s in raw.items()}

    exact, f1 = thresholded(raw_exact), thresholded(raw_f1)
    result: dict[str, float] = {
        "exact": _percent(exact.values(), len(exact)),
        "f1": _percent(f1.values(), len(f1)),
        "total": len(exact),
    }
    for prefix, ids in (
        ("HasAns", [q for q in golds if has_answer[q]]),
        ("NoAns", [q for q in golds if not has_answer[q]]),
    ):
        if ids:
            result[f"{prefix}_exact"] = _percent((exact[q] for q in ids), len(ids))
            result[f"{prefix}_f1"] = _percent((f1[q] for q in ids), len(ids))
            result[f"{prefix}_total"] = len(ids)
    if na_probs is not None:
        result["best_exact"], result["best_exact_thresh"] = _best_threshold(predictions, raw_exact, probs, has_answer)
        result["best_f1"], result["best_f1_thresh"] = _best_threshold(predictions, raw_f1, probs, has_answer)
    return result


def evaluate(
    dataset_json: Mapping[str, Any] | list | str | Path,
    predictions: Mapping[str, str],
    na_probs: Mapping[str, float] | None = None,
    na_prob_thresh: float = 1.0,
    *,
    version: str | None = None,
) -> dict[str, float]:
    """Official SQuAD metrics of ``predictions`` (id → answer text, ``""`` for "no answer") on ``dataset_json``.

    ``dataset_json`` is an official SQuAD file (path or parsed) or its ``data`` list. ``version`` ("1.1" or "2.0")
    selects the rules; by default v2.0 when the file says so or marks questions ``is_impossible``. v1.1 returns
    ``exact_match``, ``f1``, ``total``; v2.0 the official v2.0 keys (module doc). ``na_probs`` applies only to v2.0.
    """
    golds, version_2 = gold_answers(dataset_json)
    if version is not None:
        if str(version).lstrip("v") not in ("1.1", "2.0"):
            raise ValueError(f"version {version!r}: use '1.1' or '2.0'.")
        version_2 = str(version).lstrip("v") == "2.0"
    if na_probs is not None and not version_2:
        raise ValueError("na_probs apply to SQuAD v2.0 only; this dataset is evaluated with the v1.1 rules.")
    return score_answers(golds, predictions, na_probs, na_prob_thresh, version_2=version_2)
