"""Time answer extraction at SQuAD dev scale: our vectorised ``extract_answers`` against a loop-based reference.

Synthetic inputs shaped like the SQuAD dev sets after windowing at length 384 / stride 128: v2.0 has 11,873
questions and about 12.2k features, v1.1 10,570 questions and about 10.8k features (a few percent of the questions
have a second window). Each feature has a 10–30 token question, then 100–360 context tokens with character offsets,
then padding. Logits imitate a trained model: N(0, 2) in the context, N(−6, 1) elsewhere, +6 on one planted start
and end token, and (v2.0) +14 on the CLS token of every other question, so null and span scores compete. n-best 20,
maximum answer length 30. Both implementations get the same float32 logits; answers and null odds must be identical.

    python benchmarks/squad_postprocess.py [--reps 3] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from _qa_reference import reference_answers

from adalora_scores.tasks.squad import extract_answers

LENGTH = 384


def synthetic(questions: int, features: int, seed: int):
    rng = np.random.default_rng(seed)
    feature_example = np.sort(np.concatenate([np.arange(questions), rng.choice(questions, features - questions)]))
    start = rng.normal(-6, 1, (features, LENGTH)).astype(np.float32)
    end = rng.normal(-6, 1, (features, LENGTH)).astype(np.float32)
    mask = np.zeros((features, LENGTH), dtype=bool)
    offsets = np.zeros((features, LENGTH, 2), dtype=np.int64)
    reference_offsets = []
    context_tokens = rng.integers(100, 361, questions)
    for f in range(features):
        example = feature_example[f]
        first = int(rng.integers(10, 31)) + 2
        count = min(int(context_tokens[example]), LENGTH - first - 1)
        tokens = np.arange(count)
        mask[f, first : first + count] = True
        start[f, first : first + count] = rng.normal(0, 2, count)
        end[f, first : first + count] = rng.normal(0, 2, count)
        if example % 2:
            start[f, 0] += 14.0
            end[f, 0] += 14.0
        offsets[f, first : first + count, 0] = 5 * tokens
        offsets[f, first : first + count, 1] = 5 * tokens + 4
        answer = first + int(rng.integers(0, count - 5))
        start[f, answer] += 6.0
        end[f, answer + int(rng.integers(0, 5))] += 6.0
        spans = [None] * LENGTH
        for t in range(first, first + count):
            spans[t] = (int(offsets[f, t, 0]), int(offsets[f, t, 1]))
        reference_offsets.append(spans)
    ids = [f"q{i}" for i in range(questions)]
    contexts = ["".join(f"w{t:03d} " for t in range(int(n)))[: 5 * int(n)] for n in context_tokens]
    return {
        "start": start,
        "end": end,
        "mask": mask,
        "offsets": offsets,
        "feature_example": feature_example,
        "reference_offsets": reference_offsets,
        "ids": ids,
        "contexts": contexts,
    }


def ours(data, version_2: bool):
    return extract_answers(
        torch.from_numpy(data["start"]),
        torch.from_numpy(data["end"]),
        context_mask=torch.from_numpy(data["mask"]),
        offsets=torch.from_numpy(data["offsets"]),
        feature_example=torch.from_numpy(data["feature_example"]),
        example_ids=data["ids"],
        contexts=data["contexts"],
        version_2=version_2,
    )


def reference(data, version_2: bool):
    return reference_answers(
        data["start"],
        data["end"],
        data["feature_example"].tolist(),
        data["reference_offsets"],
        data["ids"],
        data["contexts"],
        version_2=version_2,
    )


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the dev-set size (for a quick look)")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    rows = []
    for name, questions, features, version_2 in (
        ("SQuAD v2.0 dev", 11_873, 12_232, True),
        ("SQuAD v1.1 dev", 10_570, 10_833, False),
    ):
        questions, features = int(questions * args.scale), int(features * args.scale)
        data = synthetic(questions, features, seed=0)
        ours_times, reference_times = [], []
        for _ in range(args.reps):  # interleaved, so both see the same machine state
            seconds, mine = timed(lambda data=data, v=version_2: ours(data, v))
            ours_times.append(seconds)
            seconds, theirs = timed(lambda data=data, v=version_2: reference(data, v))
            reference_times.append(seconds)
        answers, odds = theirs
        identical = mine.answers == answers and (odds is None or mine.null_odds == odds)
        no_answer = sum(1 for text in mine.answers.values() if text == "")
        rows.append(
            (
                name,
                questions,
                features,
                statistics.median(reference_times),
                statistics.median(ours_times),
                identical,
                no_answer,
            )
        )
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, n-best 20, max answer length 30, "
        f"median of {args.reps}"
    )
    print("| set | questions | features | loop reference s | ours s | speed-up | identical | no-answer |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for name, questions, features, slow, fast, identical, no_answer in rows:
        print(
            f"| {name} | {questions:,} | {features:,} | {slow:.2f} | {fast:.3f} | {slow / fast:.1f}× | "
            f"{'yes' if identical else 'NO'} | {no_answer:,} |"
        )


if __name__ == "__main__":
    main()
