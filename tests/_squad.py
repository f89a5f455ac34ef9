"""Small SQuAD files in the official JSON layout (data → paragraphs → qas), written for the tests.

Every paragraph is made of the test vocabulary, so the word-level tokenizer of ``conftest`` covers it. One context is
about 70 words, longer than one 48-token window; v2.0 files add unanswerable questions.
"""

from __future__ import annotations

import json
import random

from conftest import WORDS


def _paragraph(rng: random.Random, index: int, words: int, version_2: bool, prefix: str) -> dict:
    tokens = [rng.choice(WORDS) for _ in range(words)]
    context = " ".join(tokens) + "."
    qas = []
    for q in range(3):
        first = rng.randrange(words - 3)
        if index == 0 and q == 0:
            first = words - 3  # an answer at the end of the long context: only the last window holds it
        span = " ".join(tokens[first : first + rng.randint(1, 3)])
        start = len(" ".join(tokens[:first])) + (1 if first else 0)
        assert context[start : start + len(span)] == span
        qid = f"{prefix}{index}q{q}"
        question = " ".join(rng.choice(WORDS) for _ in range(4)) + "?"
        if version_2 and q == 2:
            qas.append(
                {
                    "id": qid,
                    "question": question,
                    "answers": [],
                    "is_impossible": True,
                    "plausible_answers": [{"text": span, "answer_start": start}],
                }
            )
            continue
        answers = [{"text": span, "answer_start": start}]
        if prefix == "dev":  # several gold answers, as in the official dev files
            answers.append({"text": tokens[first], "answer_start": start})
        qas.append(
            {"id": qid, "question": question, "answers": answers, **({"is_impossible": False} if version_2 else {})}
        )
    return {"context": context, "qas": qas}


def squad_json(version_2: bool, split: str, paragraphs: int = 6, seed: int = 0) -> dict:
    rng = random.Random(f"{split}{seed}{version_2}")
    paragraph_list = [_paragraph(rng, i, 70 if i == 0 else 14, version_2, split) for i in range(paragraphs)]
    return {"version": "v2.0" if version_2 else "1.1", "data": [{"title": "Tiny", "paragraphs": paragraph_list}]}


def write_squad_folder(folder, version_2: bool, train_paragraphs: int = 8, dev_paragraphs: int = 4) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "v2.0" if version_2 else "v1.1"
    for split, count in (("train", train_paragraphs), ("dev", dev_paragraphs)):
        (folder / f"{split}-{suffix}.json").write_text(json.dumps(squad_json(version_2, split, count)), "utf-8")
