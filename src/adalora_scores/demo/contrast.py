"""The demo's bundled task, "contrast sentiment": a synthetic single-sentence task that needs word order.

Every review names one positive and one negative adjective and contrasts them; the label is the polarity of the
adjective the sentence asserts::

    the plot was clever , not dull .                   1
    the plot was dull , not clever .                   0
    i expected the music to be awful , yet it was moving .   1

Each sentence of one label has a twin of the other label with the same words (the two adjectives swapped), so no
keyword or bag of words beats chance (50%): the model has to read which adjective is negated or contrasted away.
Written in the GLUE SST-2 layout (``sentence``, ``label``), so the demo runs through the same loaders, metrics and
training path as real GLUE data. It is synthetic: a workflow demonstration, not a benchmark.
"""

from __future__ import annotations

import random
from pathlib import Path

__all__ = ["make_examples", "write_contrast_task"]

POSITIVE = ("good", "great", "brilliant", "pleasant", "charming", "clever", "moving", "funny", "beautiful", "exciting")
NEGATIVE = ("bad", "awful", "dull", "boring", "clumsy", "silly", "tedious", "ugly", "weak", "predictable")
SUBJECTS = ("the film", "the plot", "the acting", "the music", "the ending", "the script", "the cast", "the story",
            "the dialogue", "the camera work")  # fmt: skip
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


def write_contrast_task(folder: str | Path, train: int = 480, dev: int = 240, seed: int = 0) -> Path:
    """Write ``train.tsv`` and ``dev.tsv`` (SST-2 layout) into ``folder``; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, count, offset in (("train", train, 0), ("dev", dev, 1)):
        rows = ["sentence\tlabel", *(f"{s}\t{y}" for s, y in make_examples(count, 2 * seed + offset))]
        (folder / f"{name}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder
