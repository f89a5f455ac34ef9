"""A local --model folder without config.json or tokenizer files fails early, naming the folder and what is missing,
and writes nothing (transformers alone would fail obscurely, or train with an all-[UNK] tokenizer)."""

from __future__ import annotations

import shutil

import pytest

from adalora_scores.cli import main
from adalora_scores.engine.pretrained_folder import check_model_folder

CASES = {
    # case: (files removed from the tiny model folder, what the error must say is missing, what it must not)
    "no config.json": (["config.json"], "no config.json", "tokenizer files"),
    "no tokenizer files": (["tokenizer.json", "tokenizer_config.json"], "no tokenizer files", "config.json (the"),
    "only weights": (["config.json", "tokenizer.json", "tokenizer_config.json"], "no config.json", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_train_names_the_folder_and_what_is_missing(case, tmp_path, tiny_model_dir, glue_root, capsys):
    removed, missing, not_missing = CASES[case]
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    for name in removed:
        (model / name).unlink()
    out = tmp_path / "out"
    capsys.readouterr()
    code = main(
        ["train", "--task", "rte", "--model", str(model), "--data", str(glue_root / "rte"), "--output", str(out)]
    )
    captured = capsys.readouterr()
    error = captured.err
    assert code == 2 and error.count("error:") == 1 and len(error.strip().splitlines()) == 1, error
    assert f"--model {model}: the folder has {missing}" in error and "save_pretrained" in error
    if not_missing:
        assert not_missing not in error
    else:  # both are missing, and the message says what the folder does hold
        assert (
            "no config.json (the model config) and no tokenizer files" in error and "holds model.safetensors" in error
        )
    assert "Couldn't instantiate" not in error
    assert not out.exists()  # nothing written


def test_complete_folders_pass(tmp_path, tiny_model_dir):
    check_model_folder(str(tiny_model_dir))  # config.json + tokenizer.json
    deberta = tmp_path / "deberta"  # DeBERTa-v3 layout: a SentencePiece model, no tokenizer.json
    deberta.mkdir()
    for name in ("config.json", "spm.model", "tokenizer_config.json", "pytorch_model.bin"):
        (deberta / name).write_text("{}")
    check_model_folder(str(deberta))
    check_model_folder("microsoft/deberta-v3-base")  # a Hub name is not checked here
    (deberta / "spm.model").unlink()
    with pytest.raises(FileNotFoundError, match="no tokenizer files"):
        check_model_folder(str(deberta))
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="it is empty"):
        check_model_folder(str(tmp_path / "empty"))
