"""Per-example gradient moments of the adapter, from hooks on the adapted layers (the collector and its einsums)."""

from adalora_scores.adapter.per_example.collector import PerExampleGradients

__all__ = ["PerExampleGradients"]
