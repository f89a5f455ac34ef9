"""Allocation: the budget schedule, triplet ranking and the allocator that ties them to a score.

Pure tensor functions and plain objects; nothing here knows a training framework or an adapter library.
"""

from adalora_scores.allocation.allocator import AllocationEvent, ScoreRankAllocator
from adalora_scores.allocation.layout import AdaptedMatrix, TripletLayout
from adalora_scores.allocation.ranking import budget_threshold, churn, keep_mask, triplet_importance
from adalora_scores.allocation.schedule import BudgetSchedule, budget_schedule

__all__ = [
    "AdaptedMatrix",
    "AllocationEvent",
    "BudgetSchedule",
    "TripletLayout",
    "ScoreRankAllocator",
    "budget_schedule",
    "budget_threshold",
    "churn",
    "keep_mask",
    "triplet_importance",
]
