"""Allocation: the budget schedule, triplet ranking and the allocator that ties them to a score."""

from adalora_scores.allocation.allocator import AllocationEvent, ScoreRankAllocator
from adalora_scores.allocation.layout import AdaptedMatrix, TripletLayout
from adalora_scores.allocation.ranking import budget_threshold, keep_mask, triplet_importance
from adalora_scores.allocation.schedule import budget_schedule

__all__ = [
    "AdaptedMatrix",
    "AllocationEvent",
    "TripletLayout",
    "ScoreRankAllocator",
    "budget_schedule",
    "budget_threshold",
    "keep_mask",
    "triplet_importance",
]
