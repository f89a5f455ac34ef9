"""The tasks ``squad`` (v1.1) and ``squad_v2``: extractive question answering, with :class:`SquadOptions`."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from adalora_scores.metrics.squad import score_answers
from adalora_scores.tasks.base import Predictions, TaskBase, register_task
from adalora_scores.tasks.squad.answers import ExtractedAnswers, extract_answers
from adalora_scores.tasks.squad.data import QAData, QAExample, load_squad_files, load_squad_hub, read_squad_json
from adalora_scores.tasks.squad.features import QAFeatures
from adalora_scores.tasks.squad.options import SquadOptions

if TYPE_CHECKING:
    from adalora_scores.config import TrainConfig

__all__ = ["SQUAD_TASKS", "SquadTask"]


@dataclass(frozen=True)
class SquadTask(TaskBase):
    """SQuAD v1.1 (``version_2`` false) or v2.0. The registered tasks have the default options;
    :meth:`with_options` returns the task of one run."""

    name: str
    version_2: bool
    main_metric: str = "f1"
    eval_splits: tuple[str, ...] = ("dev",)
    options: SquadOptions = field(default_factory=SquadOptions)
    modules_to_save: ClassVar[tuple[str, ...]] = ("qa_outputs",)
    output_names: ClassVar[tuple[str, ...]] = ("start_logits", "end_logits")
    group_key: ClassVar[str | None] = "context"  # the selection split holds out whole paragraphs
    default_max_seq_length: ClassVar[int] = 384  # long contexts come in windows of this length

    def with_options(self, options: Mapping[str, Any]) -> SquadTask:
        """A new task for one run, with validated ``options`` (see :class:`SquadOptions`)."""
        return dataclasses.replace(self, options=SquadOptions.parse(options, self.name))

    def check_config(self, config: TrainConfig) -> None:
        """``doc_stride`` must be smaller than ``max_seq_length``, so that windows advance."""
        self.options.check(config.max_seq_length)  # type: ignore[arg-type]

    def expected_data(self) -> str:
        suffix = "v2.0" if self.version_2 else "v1.1"
        return f"train-{suffix}.json and dev-{suffix}.json in the official layout (data → paragraphs → qas)"

    def load(self, data: str | Path | None) -> QAData:
        """The Hub (``rajpurkar/squad``/``rajpurkar/squad_v2``) when ``data`` is None, else the official files."""
        return load_squad_hub(self.version_2) if data is None else load_squad_files(Path(data), self.version_2)

    def load_model(self, name: str, **model_options: Any):
        from transformers import AutoModelForQuestionAnswering

        return AutoModelForQuestionAnswering.from_pretrained(name, **model_options)

    def encode(self, examples: list[QAExample], tokenizer, config, *, train: bool) -> QAFeatures:
        return QAFeatures(examples, tokenizer, config.max_seq_length, self.options.doc_stride, with_labels=train)

    def evaluate(
        self, outputs: dict[str, torch.Tensor], dataset: QAFeatures, config
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Extract answers, score them with the official rules, and return the files the official script reads.

        v2.0 metrics come from the best spans plus the null odds at ``task_options.null_score_diff_threshold``: the
        same ``exact``/``f1`` as the thresholded ``predictions.json``, plus a meaningful best-threshold search.
        """
        extracted = self._answers(outputs, dataset)
        golds = {example.id: list(example.answers) for example in dataset.examples}
        files: dict[str, Any] = {"predictions.json": extracted.answers}
        if not self.version_2:
            return score_answers(golds, extracted.answers, version_2=False), files
        metrics = score_answers(
            golds, extracted.best_spans, extracted.null_odds, self.options.null_score_diff_threshold, version_2=True
        )
        return metrics, files | {"null_odds.json": extracted.null_odds, "best_spans.json": extracted.best_spans}

    def _answers(self, outputs: dict[str, torch.Tensor], dataset: QAFeatures) -> ExtractedAnswers:
        start, end = outputs["start_logits"], outputs["end_logits"]
        return extract_answers(
            start,
            end,
            **dataset.metadata(start.shape[1]),
            example_ids=[example.id for example in dataset.examples],
            contexts=[example.context for example in dataset.examples],
            n_best=self.options.n_best_size,
            max_answer_length=self.options.max_answer_length,
            version_2=self.version_2,
            null_threshold=self.options.null_score_diff_threshold,
        )

    def prediction_dataset(self, path: Path, tokenizer, config) -> QAFeatures:
        """The questions of an official SQuAD JSON file (data → paragraphs → qas; ``answers`` optional), in
        windows as for evaluation."""
        examples = read_squad_json(Path(path), check_answers=False, labelled=False)
        return QAFeatures(examples, tokenizer, config.max_seq_length, self.options.doc_stride, with_labels=False)

    def prediction_records(self, outputs: dict[str, torch.Tensor], dataset: QAFeatures) -> Predictions:
        """``{id: answer}`` (the official predictions file) as a ``.json`` output; as rows, each question's ``id``,
        ``question`` and ``answer`` (``""``: no answer), and for v2.0 its ``null_odds`` (null − best span score, the
        official ``--na-probs`` input)."""
        extracted = self._answers(outputs, dataset)
        records = [
            {"id": example.id, "question": example.question, "answer": extracted.answers[example.id]}
            | ({"null_odds": extracted.null_odds[example.id]} if extracted.null_odds is not None else {})
            for example in dataset.examples
        ]
        return Predictions(records, document=extracted.answers)


SQUAD_TASKS: dict[str, SquadTask] = {
    name: register_task(SquadTask(name, version_2)) for name, version_2 in (("squad", False), ("squad_v2", True))
}
