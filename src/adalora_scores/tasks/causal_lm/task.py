"""The ``causal_lm`` task: instruction tuning of a decoder LM on prompt/completion records or chat messages.

Data (exactly one source): ``--data FOLDER`` holding ``train.*`` and ``dev.*`` (or ``validation.*``), each .jsonl,
.json, .csv, .tsv or .parquet; ``task_options.train_file`` and ``dev_file``; or a Hub dataset
(``task_options.hub_dataset``, and ``dev_hub_dataset`` when evaluation comes from another one, e.g. MetaMathQA →
GSM8K). Options: :class:`~adalora_scores.tasks.causal_lm.options.CausalLMOptions`.

Loss: transformers' causal-LM loss on the completion tokens only (``features.py``: prompt labels are -100). It is
the mean over the labelled tokens of the batch, T = Σ_n T_n tokens: L = (1/T) Σ_n Σ_t ℓ_{n,t}. The per-example
statistics define example n's loss as its own token mean, ℓ_n = (1/T_n) Σ_t ℓ_{n,t}, so that L = Σ_n (T_n/T) ℓ_n:
the batch loss weights each example by its share of the tokens rather than averaging the ℓ_n
(``adapter/per_example/collector.py``, ``loss_reduction="token_mean"``, which attach chooses for CAUSAL_LM models).

Evaluation on dev: the mean token loss ``loss`` = Σ_n Σ_t ℓ_{n,t} / Σ_n T_n over the whole split and
``perplexity`` = exp(loss), both lower-is-better; with ``task_options.generate=true`` also greedy generation from
each prompt and ``exact_match`` (percent) of the extracted answer (``answers.py``), with every generation in
``predictions.jsonl``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from adalora_scores.metrics.direction import register_metric_direction
from adalora_scores.tasks.base import GenerationRequest, Predictions, TaskBase, register_task
from adalora_scores.tasks.causal_lm.answers import extract_answer, same_answer
from adalora_scores.tasks.causal_lm.features import IGNORE_INDEX, CausalLMDataset, PromptDataset, completion_loss
from adalora_scores.tasks.causal_lm.options import CausalLMOptions
from adalora_scores.tasks.causal_lm.records import LMExample, examples_from_table, prompts_from_table
from adalora_scores.tasks.data import TaskData
from adalora_scores.tasks.tables import (
    SUFFIXES,
    Table,
    local_data_files,
    read_hub_tables,
    read_table,
    read_utf8,
)

__all__ = ["CAUSAL_LM_TASK", "PREDICTIONS_FILE", "CausalLMTask", "GenerationRequest"]

PREDICTIONS_FILE = "predictions.jsonl"
TRAIN_DATA_FILE = "train_data.json"


@dataclass
class CausalLMTask(TaskBase):
    """Instruction tuning (module docstring). The registered instance has the default options; :meth:`with_options`
    returns the task of one run."""

    options: CausalLMOptions = field(default_factory=CausalLMOptions)
    name: str = "causal_lm"
    eval_splits: tuple[str, ...] = ("dev",)
    train_counts: dict[str, int] | None = None
    modules_to_save: ClassVar[tuple[str, ...]] = ()
    output_names: ClassVar[tuple[str, ...]] = ("completion_loss",)

    @property
    def main_metric(self) -> str:
        return self.options.metric

    @property
    def group_key(self) -> str | None:
        """``group`` (:class:`LMExample`) when ``task_options.group_field`` is set: the selection split then holds
        out whole groups."""
        return "group" if self.options.group_field is not None else None

    def with_options(self, options: Mapping[str, Any]) -> CausalLMTask:
        """A new task for one run, with validated ``options``."""
        return CausalLMTask(CausalLMOptions.parse(options), name=self.name)

    # ---------------------------------------------------------------------------------------------------- data
    def expected_data(self) -> str:
        return (
            f"train and dev files ({', '.join(SUFFIXES)}) in a --data folder (train.*, dev.* or validation.*), "
            "or task_options.train_file and dev_file, or task_options.hub_dataset; with records holding "
            f"{self.options.prompt_field!r} and {self.options.completion_field!r} (or chat "
            f"{self.options.messages_field!r})"
        )

    def _local_files(self, data: str | Path | None) -> tuple[Path, Path]:
        options = self.options
        return local_data_files(data, options.train_file, options.dev_file, "causal_lm", self.expected_data())

    def _tables(self, data: str | Path | None) -> tuple[Table, Table]:
        options = self.options
        if options.hub_dataset is None:
            train_path, dev_path = self._local_files(data)
            return read_table(train_path), read_table(dev_path)
        if data is not None:
            raise ValueError(f"--data {data} and task_options.hub_dataset both name data; keep one.")
        train_source = (options.hub_dataset, options.hub_config)
        if options.dev_hub_dataset is None or (options.dev_hub_dataset, options.dev_hub_config) == train_source:
            splits = {"train_split": options.train_split, "dev_split": options.dev_split}
            train, dev = read_hub_tables(*train_source, splits)
            return train, dev
        (train,) = read_hub_tables(options.hub_dataset, options.hub_config, {"train_split": options.train_split})
        (dev,) = read_hub_tables(options.dev_hub_dataset, options.dev_hub_config, {"dev_split": options.dev_split})
        return train, dev

    def load(self, data: str | Path | None) -> TaskData:
        """Read and check the train and dev records (every error names the file and line)."""
        train_table, dev_table = self._tables(data)
        train = examples_from_table(train_table, self.options)
        dev = examples_from_table(dev_table, self.options.evaluation())
        return TaskData(train, {"dev": dev})

    # --------------------------------------------------------------------------------------------------- model
    def load_model(self, name: str, **model_options: Any) -> torch.nn.Module:
        """The causal LM ``name`` with its own LM head (nothing is added, so ``modules_to_save`` is empty)."""
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(name, **model_options)

    def _use_chat_template(self, tokenizer: Any) -> None:
        if self.options.chat_template is not None:
            tokenizer.chat_template = read_utf8(self.options.chat_template)

    def encode(self, examples: list[LMExample], tokenizer: Any, config: Any, *, train: bool) -> CausalLMDataset:
        self._use_chat_template(tokenizer)
        split = "train" if train else "evaluation"
        dataset = CausalLMDataset(examples, tokenizer, config.max_seq_length, self.options.truncated_completion, split)
        if train:
            counts = {"kept": len(dataset), "truncated": dataset.truncated, "dropped": dataset.dropped}
            self.train_counts = {"examples": len(examples), **counts}
        return dataset

    def batch_outputs(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``completion_loss`` of one evaluation batch: per example, the summed token loss and the token count. A
        batch without a labelled token (prompts to predict from) has no loss to take, and no forward pass."""
        if bool((batch["labels"] == IGNORE_INDEX).all()):
            return {"completion_loss": torch.zeros(len(batch["labels"]), 2, device=batch["labels"].device)}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return {"completion_loss": completion_loss(logits, batch["labels"])}

    def generation_request(self, dataset: CausalLMDataset) -> GenerationRequest | None:
        """The prompts to generate from, when ``task_options.generate`` is on."""
        if not self.options.generate:
            return None
        return GenerationRequest(dataset.prompts, self.options.max_new_tokens)

    def evaluate(
        self, outputs: dict[str, Any], dataset: CausalLMDataset, config: Any
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Mean token loss and perplexity; with generations, exact match and ``predictions.jsonl`` (module
        docstring)."""
        sums = outputs["completion_loss"].double().sum(0)
        loss = (sums[0] / sums[1]).item()
        metrics: dict[str, float] = {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "tokens": int(sums[1])}
        metrics |= {"truncated_examples": dataset.truncated, "dropped_examples": dataset.dropped}
        files: dict[str, Any] = {}
        generations = outputs.get("generations")
        if generations is not None:
            pattern, predictions, correct = self.options.answer_pattern, [], 0
            for example, text in zip(dataset.examples, generations, strict=True):
                predicted, reference = extract_answer(text, pattern), extract_answer(example.reference, pattern)
                hit = same_answer(predicted, reference)
                correct += hit
                record = {"where": example.where, "generation": text, "answer": predicted, "reference": reference}
                predictions.append(record | {"correct": hit})
            metrics["exact_match"] = 100.0 * correct / len(predictions)
            files[PREDICTIONS_FILE] = predictions
        return metrics, files

    # ----------------------------------------------------------------------------------------------- predict
    def for_prediction(self, run_folder: Path) -> CausalLMTask:
        """The task with generation on (``max_new_tokens`` as set): ``predict`` writes greedy generations."""
        return CausalLMTask(dataclasses.replace(self.options, generate=True), name=self.name)

    def prediction_dataset(self, path: Path, tokenizer: Any, config: Any) -> PromptDataset:
        """The prompts of ``path``, records as the task reads them (``prompt``, ``query_template`` or chat
        ``messages``, with the evaluation data's options); completions are not needed, and a final assistant message
        is left out, as evaluation leaves it out."""
        self._use_chat_template(tokenizer)
        table = read_table(path)
        examples = prompts_from_table(table, self.options.evaluation())
        fields = [dict(record.values) for record in table.records]
        return PromptDataset(examples, tokenizer, config.max_seq_length, fields)

    def prediction_records(self, outputs: dict[str, Any], dataset: PromptDataset) -> Predictions:
        """Each input record with ``prompt`` (prompt records: the prompt the model saw) and ``generation``."""
        records = []
        for fields, example, text in zip(dataset.fields, dataset.examples, outputs["generations"], strict=True):
            prompt = {"prompt": example.prompt} if example.messages is None else {}
            records.append(fields | prompt | {"generation": text})
        return Predictions(records)

    def run_files(self) -> dict[str, Any]:
        """``train_data.json``: how many training examples were kept, truncated and dropped."""
        return {TRAIN_DATA_FILE: self.train_counts} if self.train_counts is not None else {}


register_metric_direction("exact_match", True)
register_metric_direction("perplexity", False)
CAUSAL_LM_TASK = register_task(CausalLMTask())
