"""adalora-scores: AdaLoRA with pluggable importance scores, on Hugging Face PEFT.

>>> from peft import AdaLoraConfig, get_peft_model
>>> import adalora_scores
>>> model = get_peft_model(base_model, AdaLoraConfig(init_r=16, target_r=8, total_step=T, ...))
>>> allocator = adalora_scores.attach(model, score="fisher")
>>> # loss.backward(); optimizer.step(); model.base_model.update_and_allocate(step); optimizer.zero_grad()

The names of ``__all__`` are imported on first use (PEP 562): a part that needs no torch (the command line's
``--help``, the config) imports neither torch nor PEFT.
"""

from typing import Any

__version__ = "0.4.0.dev0"

__all__ = [
    "AllocationCallback",
    "BudgetSchedule",
    "PeftRankAllocator",
    "Score",
    "ScoreRankAllocator",
    "TripletLayout",
    "attach",
    "budget_schedule",
    "check_beta",
    "create_score",
    "ema_",
    "get_score_class",
    "list_scores",
    "register_score",
]


def __getattr__(name: str) -> Any:
    """A name of ``__all__``: on first use every one of them is imported and kept in the module."""
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from adalora_scores.engine.console import hold_import_messages

    with hold_import_messages():  # PEFT imports bitsandbytes, whose offline kernel look-up logs (console.IMPORT_NOISE)
        from adalora_scores import adapter, allocation, scores
    for module in (adapter, allocation, scores):
        globals().update({item: getattr(module, item) for item in __all__ if item in module.__all__})
    return globals()[name]


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
