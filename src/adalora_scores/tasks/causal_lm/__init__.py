"""``causal_lm``: instruction tuning of decoder LMs (see ``task.py``)."""

from adalora_scores.tasks.causal_lm.answers import extract_answer, same_answer
from adalora_scores.tasks.causal_lm.features import IGNORE_INDEX, CausalLMDataset, completion_loss
from adalora_scores.tasks.causal_lm.options import CausalLMOptions
from adalora_scores.tasks.causal_lm.records import LMExample
from adalora_scores.tasks.causal_lm.task import CAUSAL_LM_TASK, PREDICTIONS_FILE, CausalLMTask, GenerationRequest

__all__ = [
    "CAUSAL_LM_TASK",
    "IGNORE_INDEX",
    "PREDICTIONS_FILE",
    "CausalLMDataset",
    "CausalLMOptions",
    "CausalLMTask",
    "GenerationRequest",
    "LMExample",
    "completion_loss",
    "extract_answer",
    "same_answer",
]
