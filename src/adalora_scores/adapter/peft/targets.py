"""Target-module presets per ``config.model_type``: which linear layers of a model AdaLoRA adapts.

Two presets, selected by name (``target_modules_for(model_type, preset)``, or ``target_modules=qv`` in a run
config; ``target_modules`` unset means ``"all"``):

* ``"all"`` (the default): every linear layer of attention and MLP in every layer, and nothing else: not the LM
  head, not the embeddings, not a pooler, not a vision tower. For encoders these are the AdaLoRA paper's six
  per-layer matrices (q, k, v, o, f1, f2); for LLaMA-style decoders the seven q, k, v, o, gate, up, down.
* ``"qv"``: the query and value projections only, PEFT's own default for decoders (GPT-2 and Phi-3 fuse q, k and v
  into one matrix, which is then adapted as a whole).

=================================================  =====================================================  ==========
model_type                                         ``"all"`` per layer                                    ``"qv"``
=================================================  =====================================================  ==========
bert, roberta                                      query, key, value, attention.output.dense,             query,
                                                   intermediate.dense, output.dense                       value
deberta-v2                                         query_proj, key_proj, value_proj (+ as BERT)           q, v
llama, mistral, qwen2, qwen3, gemma, gemma2,       self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj      q, v
gemma3_text, gemma3 (language model only)
phi3                                               self_attn.{qkv,o}_proj, mlp.{gate_up,down}_proj        qkv_proj
gpt2                                               attn.c_attn (fused q, k, v), attn.c_proj, mlp.c_fc,    c_attn
                                                   mlp.c_proj (``Conv1D``: PEFT needs ``fan_in_fan_out``)
opt                                                self_attn.{q,k,v,out}_proj, fc1, fc2                   q, v
=================================================  =====================================================  ==========

Presets are regexes over full module names (PEFT matches a string ``target_modules`` with ``re.fullmatch``).
Explicit regexes keep poolers and heads out: PEFT's default ``"dense"`` for deberta-v2 also catches
``pooler.dense`` (73 matrices instead of 72), and a suffix like ``q_proj`` would also catch a vision tower's.
"""

from __future__ import annotations

from typing import Any

__all__ = ["PRESETS", "TARGET_MODULES", "needs_fan_in_fan_out", "resolve_target_modules", "target_modules_for"]

PRESETS = ("all", "qv")
"""Preset names, also accepted as ``target_modules`` in a run config."""

_BERT = (
    r".*\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)"
)
_LLAMA_LAYER = r"layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|o_proj)|mlp\.(gate_proj|up_proj|down_proj))"
_LLAMA_QV = r"layers\.\d+\.self_attn\.(q_proj|v_proj)"

TARGET_MODULES: dict[str, dict[str, str]] = {
    "deberta-v2": {
        "all": (
            r".*\.layer\.\d+\.(attention\.self\.(query_proj|key_proj|value_proj)|attention\.output\.dense"
            r"|intermediate\.dense|output\.dense)"
        ),
        "qv": r".*\.layer\.\d+\.attention\.self\.(query_proj|value_proj)",
    },
    "bert": {"all": _BERT, "qv": r".*\.layer\.\d+\.attention\.self\.(query|value)"},
    "gpt2": {"all": r".*\.h\.\d+\.(attn\.(c_attn|c_proj)|mlp\.(c_fc|c_proj))", "qv": r".*\.h\.\d+\.attn\.c_attn"},
    "opt": {
        "all": r".*\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)",
        "qv": r".*\.layers\.\d+\.self_attn\.(q_proj|v_proj)",
    },
    "phi3": {
        "all": r".*\.layers\.\d+\.(self_attn\.(qkv_proj|o_proj)|mlp\.(gate_up_proj|down_proj))",
        "qv": r".*\.layers\.\d+\.self_attn\.qkv_proj",
    },
    # the multimodal Gemma 3 also has a SigLIP vision tower with q_proj/v_proj: only its language model is adapted
    "gemma3": {"all": rf".*language_model\.{_LLAMA_LAYER}", "qv": rf".*language_model\.{_LLAMA_QV}"},
}
TARGET_MODULES["roberta"] = TARGET_MODULES["bert"]
for _model_type in ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text"):
    TARGET_MODULES[_model_type] = {"all": rf".*\.{_LLAMA_LAYER}", "qv": rf".*\.{_LLAMA_QV}"}


def target_modules_for(model_type: str, preset: str = "all") -> str:
    """The target-module regex of ``preset`` (``"all"`` or ``"qv"``) for a transformers ``model_type``
    (``config.model_type``).

    Raises:
        KeyError: no preset for ``model_type``.
        ValueError: unknown preset name.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown target-module preset {preset!r}; presets: {', '.join(PRESETS)}.")
    try:
        return TARGET_MODULES[model_type][preset]
    except KeyError:
        raise KeyError(
            f"no target-module preset for model_type {model_type!r} (presets: {', '.join(sorted(TARGET_MODULES))}). "
            "Pass target_modules explicitly, e.g. target_modules=['query', 'value']."
        ) from None


def resolve_target_modules(model_type: str, target_modules: str | list[str] | None) -> str | list[str]:
    """A run config's ``target_modules`` for PEFT: None (or empty) → the ``"all"`` preset, a preset name → that
    preset, anything else (module names, a regex) unchanged."""
    if not target_modules:
        return target_modules_for(model_type)
    if isinstance(target_modules, str) and target_modules in PRESETS:
        return target_modules_for(model_type, target_modules)
    return target_modules


def needs_fan_in_fan_out(model: Any) -> bool:
    """Whether ``model`` keeps its weights as (in, out), like GPT-2's ``Conv1D``: PEFT's LoRA layers then need
    ``fan_in_fan_out=True`` (PEFT would otherwise switch it on itself, with a warning per layer)."""
    from transformers.pytorch_utils import Conv1D

    return any(isinstance(module, Conv1D) for module in model.modules())
