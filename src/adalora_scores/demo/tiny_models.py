"""Tiny random models and a deterministic word-level tokenizer, for the demo, the tests and the benchmarks.

Everything here is built offline and is the same on every call: the vocabulary is the sorted set of the given
words (``WordPieceTrainer`` breaks frequency ties differently from run to run, which made tiny-model results
irreproducible), and weights come from a fixed seed inside ``torch.random.fork_rng`` (the caller's RNG is untouched).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CHAT_TEMPLATE",
    "DECODER_SPECIAL_TOKENS",
    "DECODER_TYPES",
    "SPECIAL_TOKENS",
    "decoder_tokenizer",
    "save_tiny_decoder",
    "save_tiny_model",
    "tiny_config",
    "tiny_model",
    "word_tokenizer",
]

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_SIZES = {
    "hidden_size": 16,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "max_position_embeddings": 64,
}


def word_tokenizer(texts: Iterable[str]):
    """A BERT-style fast tokenizer whose vocabulary is every word of ``texts`` (lower-cased, BERT
    pre-tokenisation), sorted, after the special tokens; other words map to [UNK]."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = {piece for text in texts for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))}
    vocab = {token: index for index, token in enumerate([*SPECIAL_TOKENS, *sorted(words - set(SPECIAL_TOKENS))])}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


DECODER_SPECIAL_TOKENS = ("<pad>", "<|endoftext|>", "<unk>", "<|system|>", "<|user|>", "<|assistant|>")
"""A decoder tokenizer's special tokens: padding is id 0 and ``<|endoftext|>`` (BOS and EOS, as in GPT-2) id 1,
matching :func:`tiny_config`'s decoders; the role markers serve :data:`CHAT_TEMPLATE`."""
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|> {{ message['content'] }}{{ eos_token }}"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|> {% endif %}"
)
"""A Jinja chat template in the style of Zephyr/Phi-3: a role marker before each message and EOS after it."""


def decoder_tokenizer(texts: Iterable[str], chat_template: str | None = CHAT_TEMPLATE):
    """A decoder's fast tokenizer whose vocabulary is every word of ``texts`` (lower-cased, BERT pre-tokenisation:
    words and punctuation), sorted, after :data:`DECODER_SPECIAL_TOKENS`; other words map to ``<unk>``. It puts BOS
    before a text (as LLaMA's tokenizers do), pads with id 0 on the right, and decodes words joined by spaces.
    ``chat_template``: the tokenizer's chat template (None: none)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = {piece for text in texts for piece, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))}
    specials = list(DECODER_SPECIAL_TOKENS)
    vocab = {token: index for index, token in enumerate([*specials, *sorted(words - set(specials))])}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.decoder = decoders.WordPiece(prefix="##", cleanup=True)  # words joined by spaces
    bos = tokenizer.token_to_id("<|endoftext|>")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", pair="<|endoftext|> $A $B:1", special_tokens=[("<|endoftext|>", bos)]
    )
    wrapped = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        additional_special_tokens=list(DECODER_SPECIAL_TOKENS[3:]),
    )
    if chat_template is not None:
        wrapped.chat_template = chat_template
    return wrapped


# decoders: transformers config class → its own size names where they differ from the encoders' ones
_DECODERS = {
    "llama": "LlamaConfig",
    "mistral": "MistralConfig",
    "qwen2": "Qwen2Config",
    "qwen3": "Qwen3Config",
    "gemma": "GemmaConfig",
    "gemma2": "Gemma2Config",
    "gemma3_text": "Gemma3TextConfig",
    "phi3": "Phi3Config",
}
DECODER_TYPES = (*_DECODERS, "gpt2", "opt")
"""Decoder model types :func:`tiny_config` builds (with ``head="causal-lm"`` in :func:`tiny_model`)."""


def tiny_config(model_type: str = "bert", vocab_size: int = 64, **overrides: Any):
    """A small transformers config: ``bert`` (default sizes: hidden 16, 2 layers, 2 heads), ``deberta-v2`` (with
    DeBERTa-v3's relative attention: shared keys, p2c and c2p, position buckets), or a decoder of
    :data:`DECODER_TYPES`: ``gpt2``, ``opt``, and LLaMA-style ones (``llama``, ``mistral``, ``qwen2``, ``qwen3``,
    ``gemma``, ``gemma2``, ``gemma3_text``, ``phi3``; 2 heads with 1 key/value head, so k and v are narrower than q).
    Decoders use token 0 for padding and 1 for BOS/EOS."""
    import transformers
    from transformers import BertConfig, DebertaV2Config, GPT2Config, OPTConfig

    sizes = {**_SIZES, "vocab_size": vocab_size, **overrides}
    if model_type == "bert":
        return BertConfig(**sizes)
    if model_type == "deberta-v2":
        extra = {
            "relative_attention": True,
            "position_buckets": 16,
            "pos_att_type": ["p2c", "c2p"],
            "position_biased_input": False,
            "share_att_key": True,
            "norm_rel_ebd": "layer_norm",
            "pooler_hidden_size": sizes["hidden_size"],
        }
        return DebertaV2Config(**{**extra, **sizes})
    tokens = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 1}
    if model_type == "gpt2":
        gpt = {
            "vocab_size": vocab_size,
            "n_embd": _SIZES["hidden_size"],
            "n_layer": _SIZES["num_hidden_layers"],
            "n_head": _SIZES["num_attention_heads"],
            "n_positions": _SIZES["max_position_embeddings"],
            **tokens,
        }
        return GPT2Config(**{**gpt, **overrides})
    if model_type == "opt":
        opt = {
            "vocab_size": vocab_size,
            "hidden_size": _SIZES["hidden_size"],
            "word_embed_proj_dim": _SIZES["hidden_size"],
            "num_hidden_layers": _SIZES["num_hidden_layers"],
            "num_attention_heads": _SIZES["num_attention_heads"],
            "ffn_dim": _SIZES["intermediate_size"],
            "max_position_embeddings": _SIZES["max_position_embeddings"],
            **tokens,
        }
        return OPTConfig(**{**opt, **overrides})
    if model_type in _DECODERS:
        decoder = {
            **_SIZES,
            "vocab_size": vocab_size,
            "num_key_value_heads": 1,
            "head_dim": _SIZES["hidden_size"] // _SIZES["num_attention_heads"],
            **tokens,
        }
        return getattr(transformers, _DECODERS[model_type])(**{**decoder, **overrides})
    raise ValueError(
        f"no tiny config for model_type {model_type!r}; use bert, deberta-v2 or a decoder "
        f"({', '.join(DECODER_TYPES)})."
    )


def tiny_model(config, head: str = "sequence-classification", seed: int = 0) -> torch.nn.Module:
    """A random model for ``config`` with a ``sequence-classification``, ``question-answering`` or ``causal-lm``
    head, drawn with ``seed`` without touching the caller's RNG."""
    from transformers import AutoModelForCausalLM, AutoModelForQuestionAnswering, AutoModelForSequenceClassification

    auto = {
        "sequence-classification": AutoModelForSequenceClassification,
        "question-answering": AutoModelForQuestionAnswering,
        "causal-lm": AutoModelForCausalLM,
    }
    if head not in auto:
        raise ValueError(f"head must be one of {sorted(auto)}, got {head!r}.")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return auto[head].from_config(config)


def save_tiny_model(
    folder: str | Path, texts: Iterable[str], model_type: str = "bert", seed: int = 0, **sizes: Any
) -> Path:
    """A Hub-like model folder: :func:`word_tokenizer` over ``texts`` and a random ``model_type`` model with a
    sequence-classification head (sizes: :func:`tiny_config` keyword arguments). Returns ``folder``."""
    folder = Path(folder)
    tokenizer = word_tokenizer(texts)
    tokenizer.save_pretrained(folder)
    config = tiny_config(model_type, vocab_size=len(tokenizer), **sizes)
    tiny_model(config, seed=seed).save_pretrained(folder)
    return folder


def save_tiny_decoder(
    folder: str | Path,
    texts: Iterable[str],
    model_type: str = "llama",
    seed: int = 0,
    chat_template: str | None = CHAT_TEMPLATE,
    **sizes: Any,
) -> Path:
    """A Hub-like causal-LM folder: :func:`decoder_tokenizer` over ``texts`` (with ``chat_template``) and a random
    ``model_type`` decoder (:data:`DECODER_TYPES`) with its LM head. Returns ``folder``."""
    folder = Path(folder)
    tokenizer = decoder_tokenizer(texts, chat_template)
    tokenizer.save_pretrained(folder)
    config = tiny_config(model_type, vocab_size=len(tokenizer), **sizes)
    tiny_model(config, head="causal-lm", seed=seed).save_pretrained(folder)
    return folder
