"""The task options of ``causal_lm`` (``task_options`` in a preset or sweep file, ``task_options.NAME=value`` on the
command line), validated with messages that say how to fix a bad value."""

from __future__ import annotations

import dataclasses
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adalora_scores.tasks.base import check_option_names, task_option
from adalora_scores.tasks.tables import check_data_options

__all__ = ["FORMATS", "CausalLMOptions"]

FORMATS = ("auto", "prompt_completion", "messages")


@dataclass(frozen=True)
class CausalLMOptions:
    """Every option has a default: records with ``prompt`` and ``completion`` (or ``messages``) in a ``--data``
    folder need none."""

    format: str = task_option(
        "auto",
        "prompt_completion, messages (chat, rendered with the tokenizer's chat template) or auto: "
        "messages when the first record has messages_field, else prompt_completion",
    )
    prompt_field: str = task_option("prompt", "the field holding the prompt")
    completion_field: str = task_option("completion", "the field holding the completion")
    messages_field: str = task_option("messages", "the field holding the chat messages")
    query_template: str | None = task_option(
        None,
        "a Python format string over the record's fields that builds the prompt instead of prompt_field, "
        "e.g. 'Question: {query} Answer:'",
    )
    answer_field: str | None = task_option(
        None, "the field holding the reference answer for exact match (default: extracted from the completion)"
    )
    group_field: str | None = task_option(
        None,
        "a training field whose equal values stay on one side of the held-out selection split "
        "(e.g. MetaMathQA's original_question)",
    )
    chat_template: str | None = task_option(
        None, "a file holding a Jinja chat template, replacing the tokenizer's own"
    )
    truncated_completion: str = task_option(
        "error", "an example whose completion is cut away entirely by max_seq_length: error, or drop (with a warning)"
    )
    train_file: str | None = task_option(None, "training file (with dev_file; instead of --data)")
    dev_file: str | None = task_option(None, "evaluation file (with train_file)")
    hub_dataset: str | None = task_option(None, "a Hub dataset name, instead of local files")
    hub_config: str | None = task_option(None, "the Hub dataset's configuration name")
    train_split: str = task_option("train", "the Hub split to train on")
    dev_hub_dataset: str | None = task_option(
        None, "the Hub dataset to evaluate on, when it is not hub_dataset (e.g. openai/gsm8k)"
    )
    dev_hub_config: str | None = task_option(None, "dev_hub_dataset's configuration name")
    dev_split: str = task_option("validation", "the Hub split to evaluate on")
    dev_query_template: str | None = task_option(
        None, "query_template for the evaluation data, when its fields differ (default: query_template)"
    )
    dev_completion_field: str | None = task_option(
        None, "completion_field for the evaluation data, when it differs (default: completion_field)"
    )
    generate: bool = task_option(
        False, "also generate greedily from each dev prompt and score exact match of the extracted answer"
    )
    max_new_tokens: int = task_option(256, "the longest generation, in tokens")
    answer_pattern: str | None = task_option(
        None,
        "a regex whose last match (its first group, if it has one) is the answer; default: the number "
        "after the last 'The answer is', else the last number (the GSM8K/MetaMathQA convention)",
    )
    main_metric: str | None = task_option(
        None, "the metric that ranks runs: perplexity (default; lower is better), or exact_match (needs generate=true)"
    )

    @classmethod
    def known(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @property
    def metric(self) -> str:
        return self.main_metric or "perplexity"

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> CausalLMOptions:
        """Validated options; an unknown name lists the known ones."""
        check_option_names(options, cls.known(), "causal_lm", "prompt_field: question")
        values: dict[str, Any] = {}
        for name, value in options.items():
            if name == "generate":
                if not isinstance(value, bool):
                    raise ValueError(f"task_options.generate must be true or false, got {value!r}.")
            elif name == "max_new_tokens":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"task_options.max_new_tokens must be a whole number >= 1, got {value!r}.")
            elif value is not None:
                if isinstance(value, (dict, list, bool)):
                    raise ValueError(f"task_options.{name} must be text, got {value!r}.")
                value = str(value)
            values[name] = value
        parsed = cls(**values)
        parsed._check()
        return parsed

    def _check(self) -> None:
        if self.format not in FORMATS:
            raise ValueError(f"task_options.format={self.format} is not one of {', '.join(FORMATS)}.")
        if self.truncated_completion not in ("error", "drop"):
            raise ValueError(f"task_options.truncated_completion={self.truncated_completion} must be error or drop.")
        if self.metric not in ("perplexity", "exact_match"):
            raise ValueError(
                f"task_options.main_metric={self.main_metric} is not a causal_lm metric; use "
                "perplexity or exact_match."
            )
        if self.metric == "exact_match" and not self.generate:
            raise ValueError(
                "task_options.main_metric=exact_match needs generated answers; add task_options.generate=true."
            )
        check_data_options(self.train_file, self.dev_file, self.hub_dataset, "train.jsonl dev.jsonl")
        if self.chat_template is not None and not Path(self.chat_template).is_file():
            raise FileNotFoundError(f"task_options.chat_template: no such file {self.chat_template}.")
        for name in ("query_template", "dev_query_template"):
            template = getattr(self, name)
            if template is not None:
                try:
                    fields = [parsed[1] for parsed in string.Formatter().parse(template) if parsed[1] is not None]
                except ValueError as error:
                    raise ValueError(
                        f"task_options.{name} {template!r} is not a format string ({error}); write "
                        "fields as {name} and a literal brace as {{ or }}."
                    ) from None
                if not fields or any(not f.isidentifier() for f in fields):
                    raise ValueError(
                        f"task_options.{name} {template!r} must name record fields in braces, e.g. "
                        "'Question: {query} Answer:'."
                    )
        if self.answer_pattern is not None:
            try:
                re.compile(self.answer_pattern)
            except re.error as error:
                raise ValueError(
                    f"task_options.answer_pattern {self.answer_pattern!r} is not a regular expression ({error})."
                ) from None

    def evaluation(self) -> CausalLMOptions:
        """The options that read the evaluation data: the dev_* overrides in place of their training values."""
        query_template = self.dev_query_template or self.query_template
        completion_field = self.dev_completion_field or self.completion_field
        return dataclasses.replace(
            self, query_template=query_template, completion_field=completion_field, group_field=None
        )
