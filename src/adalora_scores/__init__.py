"""adalora-scores: AdaLoRA with pluggable importance scores, on Hugging Face PEFT.

>>> from peft import AdaLoraConfig, get_peft_model
>>> import adalora_scores
>>> model = get_peft_model(base_model, AdaLoraConfig(init_r=16, target_r=8, total_step=T, ...))
>>> allocator = adalora_scores.attach(model, score="fisher")
>>> # loss.backward(); optimizer.step(); model.base_model.update_and_allocate(step); optimizer.zero_grad()
"""

from adalora_scores.engine.console import hold_import_messages

with hold_import_messages():  # PEFT imports bitsandbytes, whose offline kernel look-up logs (console.IMPORT_NOISE)
    from adalora_scores.adapter import AllocationCallback, PeftRankAllocator, attach
    from adalora_scores.allocation import BudgetSchedule, ScoreRankAllocator, TripletLayout, budget_schedule
    from adalora_scores.scores import (
        Score,
        check_beta,
        create_score,
        ema_,
        get_score_class,
        list_scores,
        register_score,
    )

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
