"""Shared fixtures: a tiny local model folder with a deterministic word-level tokenizer, and GLUE folders in the
original distribution layouts (a handful of rows each, written for the tests)."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import pytest

# The test folders mirror the packages (tests/engine/ for adalora_scores/engine/, ...). Test modules share
# fixtures and helpers by importing each other by name (``from test_causal_lm import decoders``), so every folder is
# on the path.
sys.path[:0] = [str(folder) for folder in sorted(Path(__file__).parent.iterdir()) if folder.is_dir()]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--bless",
        action="store_true",
        help="tests/engine/test_golden.py: store the measured values as the golden ones instead of comparing (when a "
        "change is meant to move them; review the diff of tests/golden/values.json).",
    )


WORDS = (
    "the cat dog sat ran on a mat big small red blue house car tree runs jumps quickly slowly is was not "
    "happy sad good bad movie film plot actor great awful who what where when why how question answer"
).split()


def sentence(rng: random.Random, n: int = 6) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


# task → (header or None, row builder(rng, i) → list of columns) in the original GLUE TSV layouts
def _layouts():
    def cola(r, i):
        return ["gj04", str(i % 2), "*" if i % 2 == 0 else "", sentence(r)]

    def sst2(r, i):
        return [sentence(r), str(i % 2)]

    def mrpc(r, i):
        return [str(i % 2), str(1000 + i), str(2000 + i), sentence(r), sentence(r)]

    def qqp(r, i):
        return [str(i), str(2 * i), str(2 * i + 1), sentence(r) + "?", sentence(r) + "?", str(i % 2)]

    def stsb(r, i):
        return [
            str(i),
            "main-news",
            "2012",
            "0001",
            str(i),
            "none",
            "none",
            sentence(r),
            sentence(r),
            f"{i % 5}.{i % 3}",
        ]

    def mnli(r, i):
        label = ("entailment", "neutral", "contradiction")[i % 3]
        return [
            str(i),
            str(i),
            f"{i}e",
            "fiction",
            "( x )",
            "( y )",
            "(ROOT x)",
            "(ROOT y)",
            sentence(r),
            sentence(r),
            label,
            label,
        ]

    def qnli(r, i):
        return [str(i), sentence(r) + "?", sentence(r), ("entailment", "not_entailment")[i % 2]]

    def rte(r, i):
        return [str(i), sentence(r, 12), sentence(r), ("entailment", "not_entailment")[i % 2]]

    def wnli(r, i):
        return [str(i), sentence(r, 10), sentence(r), str(i % 2)]

    mnli_header = [
        "index",
        "promptID",
        "pairID",
        "genre",
        "sentence1_binary_parse",
        "sentence2_binary_parse",
        "sentence1_parse",
        "sentence2_parse",
        "sentence1",
        "sentence2",
        "label1",
        "gold_label",
    ]
    return {
        "cola": (None, cola),
        "sst2": (["sentence", "label"], sst2),
        "mrpc": (["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"], mrpc),
        "qqp": (["id", "qid1", "qid2", "question1", "question2", "is_duplicate"], qqp),
        "stsb": (
            [
                "index",
                "genre",
                "filename",
                "year",
                "old_index",
                "source1",
                "source2",
                "sentence1",
                "sentence2",
                "score",
            ],
            stsb,
        ),
        "mnli": (mnli_header, mnli),
        "qnli": (["index", "question", "sentence", "label"], qnli),
        "rte": (["index", "sentence1", "sentence2", "label"], rte),
        "wnli": (["index", "sentence1", "sentence2", "label"], wnli),
    }


LAYOUTS = _layouts()


def write_glue_folder(folder, task: str, train_rows: int = 24, dev_rows: int = 8) -> None:
    header, build = LAYOUTS[task]
    rng = random.Random(task)
    folder.mkdir(parents=True, exist_ok=True)
    splits = {"train": train_rows}
    splits.update({"dev_matched": dev_rows, "dev_mismatched": dev_rows} if task == "mnli" else {"dev": dev_rows})
    for split, rows in splits.items():
        lines = ([header] if header else []) + [build(rng, i) for i in range(rows)]
        (folder / f"{split}.tsv").write_text("\n".join("\t".join(r) for r in lines) + "\n", encoding="utf-8")


@pytest.fixture(scope="session")
def glue_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue")
    for task in LAYOUTS:
        write_glue_folder(root / task, task)
    return root


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random BERT (hidden 16, 2 layers) and a word-level tokenizer over ``WORDS``, saved like a Hub model
    folder, from the shared deterministic builder."""
    from adalora_scores.demo.tiny_models import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"), WORDS)
