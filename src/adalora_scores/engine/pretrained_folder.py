"""Check that a local ``--model`` folder holds a model config and a tokenizer before transformers reads it.

Without this check transformers either fails with a message that names neither the folder nor the missing file
("Couldn't instantiate the backend tokenizer from one of: ..."), or, worse, with ``config.json`` but no tokenizer
files, builds a tokenizer with an empty vocabulary from the config alone and trains on inputs that are all ``[UNK]``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TOKENIZER_FILES", "check_model_folder"]

TOKENIZER_FILES = ("tokenizer.json", "vocab.*", "*.model", "*.spm", "*.tiktoken")
"""A folder holds a tokenizer when it has one of these (glob patterns): a fast-tokenizer file, a WordPiece or BPE
vocabulary, or a SentencePiece / tiktoken model (``spm.model`` for DeBERTa-v3). Tokenizers without any vocabulary
file (byte-level ones such as ByT5) are not supported as local folders."""


def check_model_folder(name: str) -> None:
    """Raise ``FileNotFoundError`` naming what is missing when ``name`` is a local folder without ``config.json``
    or without tokenizer files (see :data:`TOKENIZER_FILES`); Hub names and non-folders are left alone."""
    folder = Path(name).expanduser()
    if not folder.is_dir():
        return
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json (the model config)")
    if not any(path.is_file() for pattern in TOKENIZER_FILES for path in folder.glob(pattern)):
        missing.append(
            "tokenizer files (tokenizer.json, or tokenizer_config.json with vocab.txt / vocab.json / spm.model)"
        )
    if not missing:
        return
    present = sorted(path.name for path in folder.iterdir())
    holds = f"it holds {', '.join(present[:6])}{', ...' if len(present) > 6 else ''}" if present else "it is empty"
    raise FileNotFoundError(
        f"--model {name}: the folder has no {' and no '.join(missing)}; {holds}. A model folder needs both: write "
        "them with model.save_pretrained(folder) and tokenizer.save_pretrained(folder), or give a Hub name such as "
        "microsoft/deberta-v3-base."
    )
