"""SQuAD v1.1 and v2.0 extractive question answering: data, windowed features, answer extraction, official metrics.

The task is ``task.py`` (:class:`SquadTask`); its options are ``options.py`` (:class:`SquadOptions`).
"""

from adalora_scores.tasks.squad.answers import ExtractedAnswers, extract_answers
from adalora_scores.tasks.squad.data import QAData, QAExample, read_squad_json
from adalora_scores.tasks.squad.features import QAFeatures
from adalora_scores.tasks.squad.options import SquadOptions
from adalora_scores.tasks.squad.task import SQUAD_TASKS, SquadTask

__all__ = [
    "SQUAD_TASKS",
    "ExtractedAnswers",
    "QAData",
    "QAExample",
    "QAFeatures",
    "SquadOptions",
    "SquadTask",
    "extract_answers",
    "read_squad_json",
]
