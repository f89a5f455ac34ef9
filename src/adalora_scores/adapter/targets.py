"""Target-module presets: the six per-layer matrices the AdaLoRA paper adapts (q, k, v, o, f1, f2)."""

from __future__ import annotations

__all__ = ["TARGET_MODULES", "target_modules_for"]

# Regexes over full module names (PEFT matches a string target_modules with re.fullmatch). Explicit regexes keep
# poolers out: PEFT's default "dense" for deberta-v2 also catches pooler.dense (73 matrices instead of 72).
TARGET_MODULES: dict[str, str] = {
    "deberta-v2": (
        r".*\.layer\.\d+\.(attention\.self\.(query_proj|key_proj|value_proj)|attention\.output\.dense"
        r"|intermediate\.dense|output\.dense)"
    ),
    "bert": r".*\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense"
    r"|output\.dense)",
}
TARGET_MODULES["roberta"] = TARGET_MODULES["bert"]


def target_modules_for(model_type: str) -> str:
    """The q/k/v/o/f1/f2 target regex for a transformers ``model_type`` (``config.model_type``)."""
    try:
        return TARGET_MODULES[model_type]
    except KeyError:
        raise KeyError(
            f"no target-module preset for model_type {model_type!r} (presets: {', '.join(sorted(TARGET_MODULES))}). "
            "Pass target_modules explicitly, e.g. target_modules=['query', 'value']."
        ) from None
