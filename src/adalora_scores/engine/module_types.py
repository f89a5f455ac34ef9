"""Module types of adapted matrices, from one table that covers encoders and decoders.

Used by the report's plots (rank per layer × module type), and by the training log (kept rank per type).

=====================  ===========================================================  =========================
family                 module names                                                 types
=====================  ===========================================================  =========================
BERT, RoBERTa, MiniLM  ``attention.self.{query,key,value}``, ``attention.output.     q, k, v, o, f1, f2
                       dense``, ``intermediate.dense``, ``output.dense``
DeBERTa-v2/v3          ``query_proj``, ``key_proj``, ``value_proj`` (+ as BERT)     q, k, v, o, f1, f2
DistilBERT             ``q_lin``, ``k_lin``, ``v_lin``, ``out_lin``, ``lin1``,        q, k, v, o, f1, f2
                       ``lin2``
LLaMA, Mistral, Qwen   ``q_proj``, ``k_proj``, ``v_proj``, ``o_proj``, ``gate_proj``,  q, k, v, o, gate, up, down
                       ``up_proj``, ``down_proj``
OPT, BART-style        ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, ``fc1``,     q, k, v, o, f1, f2
                       ``fc2``
GPT-2                  ``attn.c_attn`` (fused q, k, v), ``attn.c_proj``,             qkv, o, f1, f2
                       ``mlp.c_fc``, ``mlp.c_proj``
Phi-3                  ``qkv_proj`` (fused q, k, v), ``o_proj``, ``gate_up_proj``     qkv, o, gate_up, down
                       (fused gate and up), ``down_proj``
=====================  ===========================================================  =========================
"""

from __future__ import annotations

import re

__all__ = ["MODULE_TYPES", "matrix_position", "module_type", "ordered_types"]

# (type, regex over ".{name}."), checked in order: attention output before the feed-forward output, GPT-2's
# attention projection before its MLP projection.
_TABLE = (
    ("qkv", r"\.(attn\.c_attn|qkv_proj)\."),
    ("gate_up", r"\.gate_up_proj\."),
    ("o", r"\.attn\.c_proj\."),
    ("f1", r"\.mlp\.c_fc\."),
    ("f2", r"\.mlp\.c_proj\."),
    ("q", r"\.(query|query_proj|q_proj|q_lin)\."),
    ("k", r"\.(key|key_proj|k_proj|k_lin)\."),
    ("v", r"\.(value|value_proj|v_proj|v_lin)\."),
    ("o", r"\.(attention\.output\.dense|o_proj|out_proj|out_lin)\."),
    ("gate", r"\.gate_proj\."),
    ("up", r"\.up_proj\."),
    ("down", r"\.down_proj\."),
    ("f1", r"\.(intermediate\.dense|fc1|lin1)\."),
    ("f2", r"\.(output\.dense|fc2|lin2)\."),
)
MODULE_TYPES = ("q", "k", "v", "qkv", "o", "gate", "up", "gate_up", "down", "f1", "f2")
"""Every type, in the order tables and plots show them."""
_LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")


def module_type(name: str) -> str | None:
    """The type of an adapted matrix or module name (e.g. ``...layer.3.attention.self.query_proj.lora_E.default``
    → ``q``), or None when the table has no entry for it."""
    padded = f".{name}."
    for kind, pattern in _TABLE:
        if re.search(pattern, padded):
            return kind
    return None


def matrix_position(name: str) -> tuple[int, str] | None:
    """(layer index, type) of an adapted matrix name, or None when either is unknown."""
    layer = _LAYER.search(f".{name}")
    kind = module_type(name)
    return None if layer is None or kind is None else (int(layer.group(1)), kind)


def ordered_types(kinds: set[str]) -> list[str]:
    """``kinds`` in :data:`MODULE_TYPES` order (unknown ones last, sorted)."""
    return [k for k in MODULE_TYPES if k in kinds] + sorted(kinds - set(MODULE_TYPES))
