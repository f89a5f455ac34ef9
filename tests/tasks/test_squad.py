"""SQuAD: official-metric cases worked by hand, answer extraction on constructed logits, windowed features, the
loop reference on random logits, end-to-end runs through the CLI, and bad inputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _squad import squad_json, write_squad_folder
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForQuestionAnswering, AutoTokenizer

from adalora_scores.cli import main
from adalora_scores.metrics.squad import evaluate, f1_score, normalize_answer, score_answers
from adalora_scores.tasks import get_task
from adalora_scores.tasks.squad import QAExample, QAFeatures, extract_answers, read_squad_json

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from _qa_reference import reference_answers  # noqa: E402

TINY = [
    "num_epochs=2",
    "batch_size=4",
    "init_r=4",
    "target_r=2",
    "mask_interval=1",
    "max_seq_length=48",
    "doc_stride=16",
    "learning_rate=5e-3",
    "eval_batch_size=4",
    "max_answer_length=8",
]


# ---------------------------------------------------------------- official rules, by hand
def test_normalisation():
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"
    assert normalize_answer("Theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("the") == ""


def test_exact_and_f1_with_several_gold_answers():
    # q: prediction tokens [big, red, car]; gold "red car": P = 2/3, R = 1 → F1 0.8; gold "a big dog": P = 1/3,
    # R = 1/2 → F1 0.4; the question scores the maximum, 0.8, and EM 0.
    # r: "red car!" and "The red car" both normalise to "red car": EM 1, F1 1.
    golds = {"q": ["red car", "a big dog"], "r": ["The red car"]}
    result = score_answers(golds, {"q": "the big red car", "r": "red car!"}, version_2=False)
    assert result["exact_match"] == pytest.approx(50.0)
    assert result["f1"] == pytest.approx((80.0 + 100.0) / 2)
    assert f1_score("a big dog", "the big red car") == pytest.approx(0.4)


def test_empty_answer_rules_differ_between_versions():
    # gold "the" normalises to "": v1.1 keeps it (EM 1 against "", F1 0 as no token is shared);
    # v2.0 drops it, so the question is unanswerable and "" scores EM 1 and F1 1.
    golds = {"q": ["the"]}
    assert score_answers(golds, {"q": ""}, version_2=False) == {"exact_match": 100.0, "f1": 0.0, "total": 1}
    v2 = score_answers(golds, {"q": ""}, version_2=True)
    assert (v2["exact"], v2["f1"]) == (100.0, 100.0)


def test_v2_breakdown_threshold_and_best_threshold():
    # q1, q3 answerable and predicted right; q2, q4 unanswerable but predicted with text.
    dataset = {
        "version": "v2.0",
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "c",
                        "qas": [
                            {"id": "q1", "answers": [{"text": "cat", "answer_start": 0}], "is_impossible": False},
                            {"id": "q2", "answers": [], "is_impossible": True},
                            {"id": "q3", "answers": [{"text": "red mat", "answer_start": 0}], "is_impossible": False},
                            {"id": "q4", "answers": [], "is_impossible": True},
                        ],
                    }
                ]
            }
        ],
    }
    predictions = {"q1": "a cat", "q2": "dog", "q3": "red mat", "q4": "mat"}
    na_probs = {"q1": 0.2, "q2": 0.4, "q3": 0.6, "q4": 0.8}
    result = evaluate(dataset, predictions, na_probs, na_prob_thresh=0.5)
    # na > 0.5 → "no answer": q3 (answerable) scores 0, q4 (unanswerable) scores 1; q1 1, q2 0 → 2/4
    assert result["exact"] == result["f1"] == 50.0 and result["total"] == 4
    assert (result["HasAns_exact"], result["HasAns_total"]) == (50.0, 2)
    assert (result["NoAns_exact"], result["NoAns_total"]) == (50.0, 2)
    # best threshold: start at 2 (both unanswerable right), then by na: q1 +1 → 3 (thresh 0.2), q2 −1, q3 +1, q4 −1
    assert result["best_exact"] == 75.0 and result["best_exact_thresh"] == 0.2
    assert result["best_f1"] == 75.0 and result["best_f1_thresh"] == 0.2
    without = evaluate(dataset, predictions)  # no na_probs: nothing thresholded, no best_* keys
    assert without["exact"] == 50.0 and "best_exact" not in without


def _official_best_thresh(preds, scores, na_probs, qid_to_has_ans):
    """``find_best_thresh`` of the official evaluate-v2.0.py, line for line."""
    num_no_ans = sum(1 for k in qid_to_has_ans if not qid_to_has_ans[k])
    cur_score = num_no_ans
    best_score = cur_score
    best_thresh = 0.0
    qid_list = sorted(na_probs, key=lambda k: na_probs[k])
    for qid in qid_list:
        if qid not in scores:
            continue
        if qid_to_has_ans[qid]:
            diff = scores[qid]
        else:
            diff = -1 if preds[qid] else 0
        cur_score += diff
        if cur_score > best_score:
            best_score = cur_score
            best_thresh = na_probs[qid]
    return 100.0 * best_score / len(scores), best_thresh


def test_best_threshold_breaks_ties_in_the_na_probs_file_order(tmp_path, capsys):
    # a: right (EM 1, F1 1); c: "car" for "the red car" (EM 0, F1 2/3); b: unanswerable, answered "dog" (−1).
    # a and b tie at na 0.3. Start: 1 (b counted right). Walk c (0.1) first, then the tie.
    # Dataset order a, b:  EM 1, 2 (best, 0.3), 1 → 200/3;     F1 5/3 (0.1), 8/3 (best, 0.3), 5/3 → 800/9.
    # File order   b, a:  EM 1, 0, 1 → best stays 1 (0.0) → 100/3;  F1 5/3 (best, 0.1), 2/3, 5/3 → 500/9.
    dataset = {
        "version": "v2.0",
        "data": [
            {
                "paragraphs": [
                    {
                        "context": "c",
                        "qas": [
                            {"id": "a", "answers": [{"text": "red car", "answer_start": 0}], "is_impossible": False},
                            {"id": "b", "answers": [], "is_impossible": True},
                            {
                                "id": "c",
                                "answers": [{"text": "the red car", "answer_start": 0}],
                                "is_impossible": False,
                            },
                        ],
                    }
                ]
            }
        ],
    }
    predictions = {"a": "red car", "b": "dog", "c": "car"}
    expected = {"dataset order": (200 / 3, 0.3, 800 / 9, 0.3), "file order": (100 / 3, 0.0, 500 / 9, 0.1)}
    for order, na_probs in (
        ("dataset order", {"a": 0.3, "b": 0.3, "c": 0.1}),
        ("file order", {"b": 0.3, "c": 0.1, "a": 0.3}),
    ):
        result = evaluate(dataset, predictions, na_probs)
        got = (result["best_exact"], result["best_exact_thresh"], result["best_f1"], result["best_f1_thresh"])
        assert got == pytest.approx(expected[order]), order
        has_answer = {"a": True, "b": False, "c": True}
        exact, f1 = {"a": 1, "b": 0, "c": 0}, {"a": 1.0, "b": 0.0, "c": 2 / 3}
        official = (
            *_official_best_thresh(predictions, exact, na_probs, has_answer),
            *_official_best_thresh(predictions, f1, na_probs, has_answer),
        )
        assert got == pytest.approx(official), order
    # through the CLI: the na_probs file's key order (b before a) is the one that counts
    (tmp_path / "dev.json").write_text(json.dumps(dataset))
    (tmp_path / "pred.json").write_text(json.dumps(predictions))
    (tmp_path / "na.json").write_text('{"b": 0.3, "c": 0.1, "a": 0.3}')
    capsys.readouterr()
    assert (
        main(
            [
                "evaluate-squad",
                "--data",
                str(tmp_path / "dev.json"),
                "--predictions",
                str(tmp_path / "pred.json"),
                "--na-probs",
                str(tmp_path / "na.json"),
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    got = (result["best_exact"], result["best_exact_thresh"], result["best_f1"], result["best_f1_thresh"])
    assert got == pytest.approx(expected["file order"])


def test_version_detection_and_files(tmp_path):
    path = tmp_path / "dev.json"
    path.write_text(json.dumps(squad_json(False, "dev")))
    golds = {
        qa["id"]: qa["answers"][0]["text"]
        for p in squad_json(False, "dev")["data"][0]["paragraphs"]
        for qa in p["qas"]
    }
    result = evaluate(path, golds)
    # v1.1: an answer that normalises to "" (e.g. "a") matches exactly but shares no token, so its F1 is 0
    empty = sum(1 for text in golds.values() if not normalize_answer(text))
    assert 0 < empty < len(golds)
    assert result["exact_match"] == 100.0 and result["f1"] == pytest.approx(100.0 * (len(golds) - empty) / len(golds))
    as_v2 = evaluate(path, golds, version="2.0")  # v2.0 rules: both token lists empty → F1 1
    assert as_v2["exact"] == as_v2["f1"] == 100.0 and "HasAns_exact" in as_v2


# ---------------------------------------------------------------- answer extraction
def _window(context_tokens: range, length: int = 8):
    """A feature: CLS at 0, question at 1-2, context tokens at 3.. with character spans 4t..4t+3."""
    mask = torch.zeros(length, dtype=torch.bool)
    offsets = torch.zeros(length, 2, dtype=torch.long)
    for position, token in enumerate(context_tokens, start=3):
        mask[position] = True
        offsets[position] = torch.tensor([4 * token, 4 * token + 3])
    return mask, offsets


def test_extraction_across_windows_and_null_answers():
    context = "".join(f"w{t:02d} " for t in range(8))  # token t is "w0t" at characters 4t..4t+3
    windows = [_window(range(0, 5)), _window(range(3, 8)), _window(range(0, 5)), _window(range(0, 5))]
    mask = torch.stack([w[0] for w in windows])
    offsets = torch.stack([w[1] for w in windows])
    start = torch.full((4, 8), -5.0)
    end = torch.full((4, 8), -5.0)
    # example 0 has two windows: window 0's best span (w01..w02) scores 3, window 1's (w05..w06) scores 5 → wins
    start[0, 4], end[0, 5] = 1.0, 2.0
    start[1, 5], end[1, 6] = 2.0, 3.0
    start[1, 7], end[1, 3] = 9.0, 9.0  # end before start: invalid although highest
    start[0, 0], end[0, 0], start[1, 0], end[1, 0] = 4.0, 4.0, 3.0, 3.0  # null scores 8 and 6 → minimum 6
    # example 1: null 9 beats the best span 4 (w00..w00); example 2: null −10 loses to the span w02..w04
    start[2, 3], end[2, 3], start[2, 0], end[2, 0] = 2.0, 2.0, 4.5, 4.5
    start[3, 5], end[3, 7], start[3, 0], end[3, 0] = 1.0, 1.0, -5.0, -5.0
    end[3, 5] = 0.5  # the best one-token span, w02 (1.5), loses to w02..w04 (2.0) unless spans are capped at 2
    result = extract_answers(
        start,
        end,
        context_mask=mask,
        offsets=offsets,
        feature_example=torch.tensor([0, 0, 1, 2]),
        example_ids=["a", "b", "c"],
        contexts=[context] * 3,
        n_best=3,
        max_answer_length=3,
        version_2=True,
    )
    assert result.best_spans == {"a": "w05 w06", "b": "w00", "c": "w02 w03 w04"}
    assert result.answers == {"a": "", "b": "", "c": "w02 w03 w04"}  # a: null 6 − 5 = 1 > 0 → no answer
    assert result.null_odds == pytest.approx({"a": 6.0 - 5.0, "b": 9.0 - 4.0, "c": -10.0 - 2.0})
    loose = extract_answers(
        start,
        end,
        context_mask=mask,
        offsets=offsets,
        feature_example=torch.tensor([0, 0, 1, 2]),
        example_ids=["a", "b", "c"],
        contexts=[context] * 3,
        n_best=3,
        max_answer_length=3,
        version_2=True,
        null_threshold=2.0,
    )
    assert loose.answers["a"] == "w05 w06" and loose.answers["b"] == ""
    v1 = extract_answers(
        start,
        end,
        context_mask=mask,
        offsets=offsets,
        feature_example=torch.tensor([0, 0, 1, 2]),
        example_ids=["a", "b", "c"],
        contexts=[context] * 3,
        n_best=3,
        max_answer_length=2,
    )
    assert v1.answers["c"] == "w02" and v1.null_odds is None  # a 3-token span is now too long


@pytest.mark.parametrize("version_2", [False, True])
def test_extraction_equals_loop_reference_on_random_logits(version_2):
    generator = np.random.default_rng(3)
    features, length, examples = 60, 24, 40
    feature_example = np.sort(np.concatenate([np.arange(examples), generator.choice(examples, features - examples)]))
    start = generator.normal(0, 2, (features, length)).astype(np.float32)
    end = generator.normal(0, 2, (features, length)).astype(np.float32)
    mask = np.zeros((features, length), dtype=bool)
    mask[:, 4:20] = True
    offsets = np.zeros((features, length, 2), dtype=np.int64)
    offsets[:, 4:20, 0] = 3 * np.arange(16)
    offsets[:, 4:20, 1] = 3 * np.arange(16) + 2
    spans = [
        [(int(a), int(b)) if m else None for (a, b), m in zip(o, k, strict=True)]
        for o, k in zip(offsets, mask, strict=True)
    ]
    ids, contexts = [f"q{i}" for i in range(examples)], ["".join(f"{t:02d} " for t in range(16))] * examples
    ours = extract_answers(
        torch.from_numpy(start),
        torch.from_numpy(end),
        context_mask=torch.from_numpy(mask),
        offsets=torch.from_numpy(offsets),
        feature_example=torch.from_numpy(feature_example),
        example_ids=ids,
        contexts=contexts,
        n_best=5,
        max_answer_length=4,
        version_2=version_2,
    )
    answers, odds = reference_answers(
        start, end, feature_example.tolist(), spans, ids, contexts, n_best=5, max_answer_length=4, version_2=version_2
    )
    valid = [q for q in ids if answers[q] != "empty"]  # the reference's placeholder when no span is valid
    assert len(valid) > 30
    assert {q: ours.answers[q] for q in valid} == {q: answers[q] for q in valid}
    assert all(ours.answers[q] == "" for q in ids if q not in valid)
    if version_2:
        assert ours.null_odds == odds


# ---------------------------------------------------------------- features
def test_windows_and_labels(tiny_model_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    words = ("the cat sat on a mat " * 12).split()
    context = " ".join(words)
    start = context.index("mat", 200)  # late in the context
    examples = [
        QAExample("long", "who sat?", context, ("mat",), (start,)),
        QAExample("none", "who ran?", "the dog ran", (), ()),
    ]
    features = QAFeatures(examples, tokenizer, max_length=32, stride=8, with_labels=True)
    long_windows = [i for i, e in enumerate(features.feature_example) if e == 0]
    assert len(long_windows) >= 3 and features.feature_example[-1] == 1
    inside = 0
    for i in long_windows:
        item = features[i]
        s, e = item["start_positions"], item["end_positions"]
        if s == features.cls_index[i]:
            assert e == s
            continue
        inside += 1
        assert context[features.offsets[i][s][0] : features.offsets[i][e][1]] == "mat"
    assert inside >= 1  # the answer sits in at least one window; other windows point at CLS
    assert features[len(features) - 1]["start_positions"] == features.cls_index[-1]  # unanswerable → CLS
    with pytest.raises(ValueError, match="doc_stride"):
        QAFeatures(examples, tokenizer, max_length=32, stride=32, with_labels=True)


# ---------------------------------------------------------------- end to end through the CLI
@pytest.mark.parametrize("task", ["squad", "squad_v2"])
def test_train_and_evaluate_via_cli(task, tmp_path, tiny_model_dir, capsys):
    version_2 = task == "squad_v2"
    data = tmp_path / "data"
    write_squad_folder(data, version_2)
    out = tmp_path / "run"
    score = "gsnr_per_example" if version_2 else "fisher"  # one example per window for the per-example estimator
    code = main(
        [
            "train",
            "--task",
            task,
            "--score",
            score,
            "--model",
            str(tiny_model_dir),
            "--data",
            str(data),
            "--output",
            str(out),
            *TINY,
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    dev = data / f"dev-{'v2.0' if version_2 else 'v1.1'}.json"
    ids = {qa["id"] for p in json.loads(dev.read_text())["data"][0]["paragraphs"] for qa in p["qas"]}
    predictions = json.loads((out / "predictions.json").read_text())
    assert set(predictions) == ids
    assert metrics["steps"] == metrics["total_steps"] > 0 and metrics["main_metric"] == "f1"
    assert metrics["train_features"] > metrics["train_examples"]  # the long context became several windows
    model = AutoModelForQuestionAnswering.from_pretrained(tiny_model_dir)
    reloaded = PeftModel.from_pretrained(model, out / "adapter")  # a stock PEFT adapter with the pruned ranks
    ranks = json.loads((out / "rank_pattern.json").read_text())
    assert sum(v["rank"] for v in ranks.values()) == metrics["final_budget"]
    saved = load_file(out / "adapter" / "adapter_model.safetensors")
    assert any("qa_outputs" in key for key in saved)  # the QA head is trained fully and saved with the adapter
    head = reloaded.base_model.model.qa_outputs.modules_to_save["default"].weight
    assert torch.equal(head, next(v for k, v in saved.items() if "qa_outputs" in k and k.endswith("weight")))
    features = metrics["eval"]["dev"]
    capsys.readouterr()
    if not version_2:
        assert set(features) == {"exact_match", "f1", "total"} and features["total"] == len(ids)
        assert main(["evaluate-squad", "--data", str(dev), "--predictions", str(out / "predictions.json")]) == 0
        assert json.loads(capsys.readouterr().out) == features
        return
    assert {"exact", "f1", "HasAns_exact", "NoAns_f1", "best_f1", "best_f1_thresh"} <= set(features)
    odds = json.loads((out / "null_odds.json").read_text())
    assert set(odds) == ids
    assert all(predictions[q] == "" for q in ids if odds[q] > 0)
    # the thresholded predictions give the same exact/F1 as our metrics; best spans + odds give everything
    assert main(["evaluate-squad", "--data", str(dev), "--predictions", str(out / "predictions.json")]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert (plain["exact"], plain["f1"]) == (features["exact"], features["f1"])
    report = tmp_path / "eval.json"
    assert (
        main(
            [
                "evaluate-squad",
                "--data",
                str(dev),
                "--predictions",
                str(out / "best_spans.json"),
                "--na-probs",
                str(out / "null_odds.json"),
                "--na-prob-thresh",
                "0",
                "--output",
                str(report),
            ]
        )
        == 0
    )
    assert json.loads(report.read_text()) == features


def test_squad_preset_resolves():
    from adalora_scores.presets.overrides import resolve_config

    for preset in ("paper-squad", "adalora-squad"):
        for task in ("squad", "squad_v2"):
            config = resolve_config(preset, task, {"task": task}, [])
            assert config.max_seq_length == 384 and config.batch_size == 16
            assert config.task_options["doc_stride"] == 128
    assert resolve_config("paper-squad", "squad_v2", {"task": "squad_v2"}, []).num_epochs == 3
    assert get_task("SQuAD-v2").version_2 and not get_task("squad").version_2


# ---------------------------------------------------------------- bad inputs
def _article(qas: list) -> dict:
    return {"data": [{"paragraphs": [{"context": "the cat sat", "qas": qas}]}]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"version": "1.1"}), "missing 'data'"),
        (json.dumps(_article([{"id": "x", "question": "q"}])), r"qas\[0\]: missing 'answers'"),
        (
            json.dumps(_article([{"id": "x", "question": "q", "answers": [{"text": "dog", "answer_start": 4}]}])),
            "not at answer_start",
        ),
        (json.dumps(_article([{"id": "x", "question": "q", "answers": []}] * 2)), "duplicate question id 'x'"),
    ],
)
def test_malformed_files_name_the_entry(tmp_path, content, message):
    path = tmp_path / "train-v1.1.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        read_squad_json(path, check_answers=True)
    assert str(path) in str(error.value)


def test_cli_errors(tmp_path, tiny_model_dir, capsys):
    dev = tmp_path / "dev.json"
    dev.write_text(json.dumps(squad_json(True, "dev", paragraphs=1)))
    predictions = tmp_path / "predictions.json"
    predictions.write_text(json.dumps({"dev0q0": "cat", "nope": "dog"}))
    assert main(["evaluate-squad", "--data", str(dev), "--predictions", str(predictions)]) == 2
    error = capsys.readouterr().err
    assert "2 question(s) without a value" in error and "1 id(s) not in the dataset" in error and "nope" in error
    predictions.write_text(json.dumps(["cat"]))
    assert main(["evaluate-squad", "--data", str(dev), "--predictions", str(predictions)]) == 2
    assert "expected a JSON object mapping question id" in capsys.readouterr().err
    assert main(["evaluate-squad", "--data", str(tmp_path / "missing.json"), "--predictions", str(predictions)]) == 2
    assert "does not exist" in capsys.readouterr().err
    out = tmp_path / "run"
    code = main(
        [
            "train",
            "--task",
            "squad",
            "--model",
            str(tiny_model_dir),
            "--data",
            str(tmp_path / "nodata"),
            "--output",
            str(out),
            *TINY,
        ]
    )
    assert code == 2 and "train-v1.1.json and dev-v1.1.json" in capsys.readouterr().err
    assert not out.exists()


def test_hub_layout_converts(monkeypatch):
    """The Hub code path, fed a local DatasetDict in the rajpurkar/squad_v2 column layout."""
    import datasets

    rows = {
        "id": ["a", "b"],
        "title": ["t", "t"],
        "context": ["the cat sat", "the dog ran"],
        "question": ["who sat?", "who flew?"],
        "answers": [{"text": ["cat"], "answer_start": [4]}, {"text": [], "answer_start": []}],
    }
    local = datasets.DatasetDict(
        {"train": datasets.Dataset.from_dict(rows), "validation": datasets.Dataset.from_dict(rows)}
    )
    requested = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name: requested.append(name) or local)
    data = get_task("squad_v2").load(None)
    assert requested == ["rajpurkar/squad_v2"]
    assert data.train[0] == QAExample("a", "who sat?", "the cat sat", ("cat",), (4,))
    assert data.evals["dev"][1].answers == ()
