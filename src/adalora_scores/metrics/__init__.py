"""Offline evaluation metrics (scikit-learn / scipy for GLUE, our own official-rule SQuAD evaluator)."""
