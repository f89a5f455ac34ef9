"""Records → examples: a prompt and a completion, or chat messages, each remembering the line it came from.

Errors name the file and line (``adalora_scores.tasks.tables.Record.where``) and the fix; nothing is tokenised or
written before every record has been checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from adalora_scores.tasks.causal_lm.options import CausalLMOptions
from adalora_scores.tasks.tables import Record, Table

__all__ = ["ROLES", "LMExample", "examples_from_table", "prompts_from_table", "resolve_format"]

ROLES = ("system", "user", "assistant", "tool")
"""Chat roles a message may have."""


@dataclass(frozen=True)
class LMExample:
    """One example: ``prompt`` and ``completion`` text, or ``messages`` (the loss is taken on the last one, an
    assistant message); ``answer`` is the reference for exact match (None: extracted from the completion). A prompt
    to generate from (``predict``) has no completion, and its ``messages`` are the prompt alone."""

    where: str
    prompt: str | None = None
    completion: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    answer: str | None = None
    group: str | None = None
    """The value of ``task_options.group_field``: examples sharing it stay on one side of the selection split."""

    @property
    def reference(self) -> str:
        """The text the reference answer is extracted from: ``answer``, else the completion."""
        if self.answer is not None:
            return self.answer
        return self.completion if self.messages is None else self.messages[-1][1]  # type: ignore[return-value]


def _text(record: Record, name: str, option: str, what: str) -> str:
    if name not in record.values:
        raise ValueError(
            f"{record.where}: no field {name!r} (it has {', '.join(map(str, record.values))}); add it, "
            f"or set task_options.{option} to the right name."
        )
    value = record.values[name]
    if value is None or (isinstance(value, str) and not value.strip()) or isinstance(value, float) and value != value:
        raise ValueError(f"{record.where}, field {name!r}: empty {what}; fill it in or remove the record.")
    if isinstance(value, (dict, list)):
        raise ValueError(f"{record.where}, field {name!r}: the {what} must be text, got {type(value).__name__}.")
    return str(value)


def _prompt(record: Record, options: CausalLMOptions) -> str:
    if options.query_template is None:
        return _text(record, options.prompt_field, "prompt_field", "prompt")
    try:
        return options.query_template.format_map(record.values)
    except KeyError as error:
        raise ValueError(
            f"{record.where}: task_options.query_template names the field {error.args[0]!r}, which the "
            f"record lacks (it has {', '.join(map(str, record.values))}); fix the template or the "
            "data."
        ) from None


def _messages(record: Record, options: CausalLMOptions, answered: bool = True) -> tuple[tuple[str, str], ...]:
    """The record's chat messages, checked; ``answered``: ending with the assistant's answer (training and
    evaluation data). Without it (prompts for ``predict``) a final assistant message, the reference, is left out
    as evaluation leaves it out, and the rest is the prompt."""
    name = options.messages_field
    if name not in record.values:
        raise ValueError(
            f"{record.where}: no field {name!r} (it has {', '.join(map(str, record.values))}); add it, "
            "or set task_options.messages_field to the right name."
        )
    messages = record.values[name]
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ValueError(
            f"{record.where}, field {name!r}: expected a non-empty list of {{role, content}} messages, "
            f"got {messages!r}."
        )
    parsed = []
    for number, message in enumerate(messages, 1):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(
                f"{record.where}, message {number}: expected an object with 'role' and 'content', got {message!r}."
            )
        role, content = message["role"], message["content"]
        if role not in ROLES:
            raise ValueError(
                f"{record.where}, message {number}: unknown role {role!r}; use one of {', '.join(ROLES)}."
            )
        if not isinstance(content, str):
            raise ValueError(f"{record.where}, message {number}: content must be text, got {content!r}.")
        parsed.append((role, content))
    if not answered:
        prompt = parsed[:-1] if parsed[-1][0] == "assistant" else parsed
        if not prompt:
            raise ValueError(
                f"{record.where}: the conversation holds only the assistant's answer; give the prompt "
                "before it (e.g. a user message)."
            )
        return tuple(prompt)
    if parsed[-1][0] != "assistant" or not parsed[-1][1].strip():
        raise ValueError(
            f"{record.where}: the last message must be a non-empty assistant message (the completion "
            f"the loss is taken on), got role {parsed[-1][0]!r}; end the conversation with the "
            "assistant's answer."
        )
    if len(parsed) < 2:
        raise ValueError(
            f"{record.where}: a conversation needs a prompt before the assistant's answer (e.g. a user message)."
        )
    return tuple(parsed)


def resolve_format(table: Table, options: CausalLMOptions) -> str:
    """``options.format``, with ``auto`` decided by the first record."""
    if options.format != "auto":
        return options.format
    first = table.records[0].values if table.records else {}
    return "messages" if options.messages_field in first and options.query_template is None else "prompt_completion"


def examples_from_table(table: Table, options: CausalLMOptions) -> list[LMExample]:
    """Every record of ``table`` as an :class:`LMExample`, checked (see the module docstring)."""
    if not table.records:
        raise ValueError(f"{table.path} holds no examples; expected one record per example.")
    kind = resolve_format(table, options)
    examples = []
    for record in table.records:
        extra: dict[str, Any] = {}
        if options.answer_field is not None:
            extra["answer"] = _text(record, options.answer_field, "answer_field", "answer")
        if options.group_field is not None:
            extra["group"] = _text(record, options.group_field, "group_field", "group")
        if kind == "messages":
            examples.append(LMExample(record.where, messages=_messages(record, options), **extra))
        else:
            prompt = _prompt(record, options)
            completion = _text(record, options.completion_field, "completion_field", "completion")
            examples.append(LMExample(record.where, prompt=prompt, completion=completion, **extra))
    return examples


def prompts_from_table(table: Table, options: CausalLMOptions) -> list[LMExample]:
    """Every record of ``table`` as a prompt to generate from (``predict``): its prompt (``prompt_field`` or
    ``query_template``), or its conversation up to the answer (:func:`_messages` without ``answered``). No completion
    is needed, and none is read; the examples have ``completion`` None."""
    if not table.records:
        raise ValueError(f"{table.path} holds no prompts; expected one record per prompt.")
    if resolve_format(table, options) == "messages":
        return [
            LMExample(record.where, messages=_messages(record, options, answered=False)) for record in table.records
        ]
    return [LMExample(record.where, prompt=_prompt(record, options)) for record in table.records]
