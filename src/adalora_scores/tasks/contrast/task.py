"""The bundled task ``contrast_sentiment``: a synthetic single-sentence task that needs word order (the demo's).

Every review names one positive and one negative adjective and contrasts them; the label is the polarity of the
adjective the sentence asserts::

    the plot was clever , not dull .                   1
    the plot was dull , not clever .                   0
    i expected the music to be awful , yet it was moving .   1

Each sentence of one label has a twin of the other label with the same words (the two adjectives swapped), so no
keyword or bag of words beats chance (50%): the model has to read which adjective is negated or contrasted away.
Registered as its own task, so that its results never sit in a GLUE column. Without ``--data`` it generates its
data in memory (480 train and 240 dev sentences, data seed 0); ``write_contrast_task`` writes the same data as files
in the GLUE SST-2 layout (``sentence``, ``label``), which ``--data`` also reads. It is synthetic: a workflow
demonstration, not a benchmark.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from adalora_scores.tasks.base import register_task
from adalora_scores.tasks.glue.task import BundledTask

__all__ = ["CONTRAST_TASK", "ContrastTask", "make_examples", "write_contrast_task"]

TRAIN_SIZE, DEV_SIZE = 480, 240

POSITIVE = ("good", "great", "brilliant", "pleasant", "charming", "clever", "moving", "funny", "beautiful", "exciting")
NEGATIVE = ("bad", "awful", "dull", "boring", "clumsy", "silly", "tedious", "ugly", "weak", "predictable")
SUBJECTS = (
    "the film",
    "the plot",
    "the acting",
    "the music",
    "the ending",
    "the script",
    "the cast",
    "the story",
    "the dialogue",
    "the camera work",
)
TEMPLATES = (  # {a}: the asserted adjective (decides the label), {b}: the one negated or contrasted away
    "{s} was {a} , not {b} .",
    "{s} was not {b} but {a} .",
    "{s} was {a} rather than {b} .",
    "{s} is not {b} ; it is {a} .",
    "{s} was hardly {b} ; it was {a} .",
    "{s} could have been {b} , but it was {a} .",
    "i expected {s} to be {b} , yet it was {a} .",
    "some call {s} {b} , but i found it {a} .",
)


def make_examples(count: int, seed: int) -> list[tuple[str, int]]:
    """``count`` (sentence, label) pairs in label-balanced twins: the same words with the adjectives swapped."""
    rng = random.Random(seed)
    examples = []
    for _ in range((count + 1) // 2):
        template, subject = rng.choice(TEMPLATES), rng.choice(SUBJECTS)
        good, bad = rng.choice(POSITIVE), rng.choice(NEGATIVE)
        examples.append((template.format(s=subject, a=good, b=bad), 1))
        examples.append((template.format(s=subject, a=bad, b=good), 0))
    rng.shuffle(examples)
    return examples[:count]


def _splits(train: int, dev: int, seed: int) -> dict[str, list[tuple[str, int]]]:
    return {"train": make_examples(train, 2 * seed), "dev": make_examples(dev, 2 * seed + 1)}


def write_contrast_task(folder: str | Path, train: int = TRAIN_SIZE, dev: int = DEV_SIZE, seed: int = 0) -> Path:
    """Write ``train.tsv`` and ``dev.tsv`` (SST-2 layout) into ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, examples in _splits(train, dev, seed).items():
        rows = ["sentence\tlabel", *(f"{s}\t{y}" for s, y in examples)]
        (folder / f"{name}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@dataclass(frozen=True)
class ContrastTask(BundledTask):
    """Binary accuracy like SST-2, with bundled data instead of the Hub."""

    def bundled_splits(self) -> dict[str, list[tuple[str, int]]]:
        return _splits(TRAIN_SIZE, DEV_SIZE, 0)


CONTRAST_TASK = register_task(
    ContrastTask("contrast_sentiment", ("sentence",), ("sentence",), "label", ("0", "1"), "accuracy", "accuracy")
)
