"""SQuAD examples from the Hub (``rajpurkar/squad``, ``rajpurkar/squad_v2``) or the official JSON files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adalora_scores.tasks.tables import read_utf8

__all__ = ["QAExample", "QAData", "load_squad_files", "load_squad_hub", "read_squad_json"]


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    context: str
    answers: tuple[str, ...]
    """Gold answer texts; empty for an unanswerable (v2.0) question."""
    answer_starts: tuple[int, ...]
    """Character offsets of ``answers`` in ``context``."""


@dataclass(frozen=True)
class QAData:
    train: list[QAExample]
    evals: dict[str, list[QAExample]]


def _require(record: Any, key: str, kind: type, where: str) -> Any:
    if not isinstance(record, dict) or key not in record:
        raise ValueError(f"{where}: missing {key!r}; expected the official SQuAD layout data → paragraphs → qas.")
    value = record[key]
    if not isinstance(value, kind):
        expected = getattr(kind, "__name__", str(kind))
        raise ValueError(f"{where}: {key!r} must be a {expected}, got {type(value).__name__}.")
    return value


def read_squad_json(path: Path, *, check_answers: bool, labelled: bool = True) -> list[QAExample]:
    """Examples of one official SQuAD JSON file (v1.1 or v2.0); errors name the file and the bad entry.

    ``check_answers`` (training files) requires every answer to sit at its ``answer_start`` in the context. Without
    ``labelled`` (questions to answer, for ``predict``) a question needs no ``answers``.
    """
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file.")
    try:
        loaded = json.loads(read_utf8(path))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error}); expected an official SQuAD file.") from None
    examples, seen = [], set()
    for a, article in enumerate(_require(loaded, "data", list, str(path))):
        for p, paragraph in enumerate(_require(article, "paragraphs", list, f"{path}: data[{a}]")):
            where_p = f"{path}: data[{a}].paragraphs[{p}]"
            context = _require(paragraph, "context", str, where_p)
            for q, qa in enumerate(_require(paragraph, "qas", list, where_p)):
                where = f"{where_p}.qas[{q}]"
                qid = str(_require(qa, "id", str | int, where))
                if qid in seen:
                    raise ValueError(f"{where}: duplicate question id {qid!r}.")
                seen.add(qid)
                question = _require(qa, "question", str, where)
                answers = _require(qa, "answers", list, where) if labelled or "answers" in qa else []
                if qa.get("is_impossible") and answers:
                    raise ValueError(f"{where} (id {qid!r}): is_impossible is true but 'answers' is not empty.")
                texts, starts = [], []
                for n, answer in enumerate(answers):
                    text = _require(answer, "text", str, f"{where}.answers[{n}]")
                    start = _require(answer, "answer_start", int, f"{where}.answers[{n}]")
                    if check_answers and context[start : start + len(text)] != text:
                        raise ValueError(
                            f"{where}.answers[{n}] (id {qid!r}): answer {text!r} is not at answer_start {start} of "
                            f"the context (found {context[start : start + len(text)]!r})."
                        )
                    texts.append(text)
                    starts.append(start)
                examples.append(QAExample(qid, question, context, tuple(texts), tuple(starts)))
    if not examples:
        raise ValueError(f"{path} holds no questions.")
    return examples


def load_squad_files(folder: Path, version_2: bool) -> QAData:
    """``train-v1.1.json``/``dev-v1.1.json`` (or ``-v2.0``) from a folder; ``train.json``/``dev.json`` also work."""
    suffix = "v2.0" if version_2 else "v1.1"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"--data {folder} is not a folder; expected train-{suffix}.json and dev-{suffix}.json."
        )

    def find(split: str) -> Path:
        for name in (f"{split}-{suffix}.json", f"{split}.json"):
            if (folder / name).is_file():
                return folder / name
        raise FileNotFoundError(
            f"{folder}: no {split}-{suffix}.json (or {split}.json); expected the official SQuAD {suffix} files."
        )

    return QAData(
        read_squad_json(find("train"), check_answers=True), {"dev": read_squad_json(find("dev"), check_answers=False)}
    )


def load_squad_hub(version_2: bool) -> QAData:
    from datasets import load_dataset

    dataset = load_dataset("rajpurkar/squad_v2" if version_2 else "rajpurkar/squad")

    def convert(split: str) -> list[QAExample]:
        rows = dataset[split]
        return [
            QAExample(str(i), q, c, tuple(a["text"]), tuple(a["answer_start"]))
            for i, q, c, a in zip(rows["id"], rows["question"], rows["context"], rows["answers"], strict=True)
        ]

    return QAData(convert("train"), {"dev": convert("validation")})
