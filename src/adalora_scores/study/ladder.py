"""A ladder: rows ordered so that each changes exactly one thing from the row it steps from, pricing each step.

A sweep file's ``ladder:`` section lists the rows in order, each with its settings and, optionally, ``from:`` the
earlier row it steps from (default: the row before it)::

    ladder:
      lora_r8: {method: lora, target_r: 8}
      svd_lora_r8_gamma0: {method: svd_lora, target_r: 8, orth_reg_weight: 0.0}   # the P Λ Q form, λ = 0 start
      svd_lora_r8: {method: svd_lora, target_r: 8}                               # the preset's γ
      random: {score: random}                                                    # extra rank, then pruning
      fisher_per_example: {score: fisher_per_example, from: random}              # a sibling of the next row
      sensitivity: {score: sensitivity, from: random}
      sensitivity_paper_alpha: {score: sensitivity, lora_alpha: 16}              # the paper's α

What a step changes is read from the two rows' resolved configs (:func:`step_changes`), leaving out the grid keys
(each row tunes them) and what a method does not use: neither LoRA nor SVD-LoRA has a score, an initial rank or a
budget schedule, so a change of ``method`` is one change, whatever settings the new method brings with it. LoRA has
no regulariser: its γ counts as 0. The update scale counts as c = α / r
(``adalora_scores.config.effective_update_scale``), so ``lora_alpha`` and ``update_scale`` giving one c are no change.

The report prices each step with the paired difference to the row it steps from (:mod:`adalora_scores.study.report`),
and draws the chain from the first row to the last as a waterfall.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from adalora_scores.config import SCALE_KEYS, TrainConfig, effective_update_scale

__all__ = ["FROM_KEY", "Step", "chain", "ladder_steps", "step_changes", "step_text"]

FROM_KEY = "from"
"""The key of a ladder row that names the earlier row it steps from."""

_SCHEDULE = frozenset(
    "score score_options task_gradient_only init_r budget_warmup budget_final mask_interval beta1 beta2".split()
)
UNUSED_BY_METHOD: dict[str, frozenset[str]] = {"adalora": frozenset(), "svd_lora": _SCHEDULE, "lora": _SCHEDULE}
"""The settings a method does not use: neither baseline allocates (no score, initial rank or budget schedule;
``adalora_scores.adapter.peft.build``). LoRA has no orthogonal regulariser either: its γ counts as 0, so a step from
LoRA to SVD-LoRA with γ > 0 changes two things."""

_NOT_SETTINGS = frozenset({"seed", "task", *SCALE_KEYS})


@dataclasses.dataclass(frozen=True)
class Step:
    """One rung: ``row`` and the earlier row it steps from (``parent`` None for the first row)."""

    row: str
    parent: str | None


def ladder_steps(rows: Mapping[str, Mapping[str, Any]], where: str = "the ladder") -> list[Step]:
    """The steps of a ``ladder:`` section (row → settings, in order): each row steps from its ``from:`` row, which
    must come before it, or from the row before it. Errors name the row and the fix."""
    names = list(rows)
    steps = []
    for index, name in enumerate(names):
        settings = rows[name]
        if not isinstance(settings, Mapping):
            raise ValueError(
                f"{where}.{name} must be a mapping of settings, e.g. {{score: random}}, got {settings!r}."
            )
        parent = settings.get(FROM_KEY, names[index - 1] if index else None)
        if index == 0 and parent is not None:
            raise ValueError(
                f"{where}.{name} is the first row, the one every step starts from; remove its {FROM_KEY}: {parent!r}."
            )
        if parent is not None and parent not in names[:index]:
            earlier = ", ".join(names[:index])
            raise ValueError(
                f"{where}.{name}: {FROM_KEY}: {parent!r} is not an earlier row of the ladder; name one of {earlier}."
            )
        steps.append(Step(name, parent))
    return steps


def _meaningful(values: Mapping[str, Any], skip: frozenset[str]) -> dict[str, Any]:
    """The settings of a config that decide its result: without what its method does not use, with γ = 0 for
    LoRA and the update scale as c."""
    method = str(values.get("method", "adalora"))
    unused = UNUSED_BY_METHOD.get(method, frozenset())
    found = {k: v for k, v in values.items() if k not in unused and k not in skip and k not in _NOT_SETTINGS}
    if method == "lora":
        found["orth_reg_weight"] = 0.0
    if not skip & set(SCALE_KEYS):  # a tuned scale is no step's change
        found["update_scale"] = round(effective_update_scale(dict(values)), 12)
    return found


def step_changes(
    before: Mapping[str, Any], after: Mapping[str, Any], skip: Sequence[str] = ()
) -> list[tuple[str, Any, Any]]:
    """``(setting, before, after)`` for what changes from config ``before`` to config ``after`` (``TrainConfig``
    dicts), leaving out ``skip`` (the grid keys). A change of ``method`` is one change: the settings only one of the
    two methods uses are not compared."""
    skipped = frozenset(skip)
    methods = {str(before.get("method", "adalora")), str(after.get("method", "adalora"))}
    unused = frozenset().union(*(UNUSED_BY_METHOD.get(m, frozenset()) for m in methods)) if len(methods) > 1 else None
    old, new = _meaningful(before, skipped), _meaningful(after, skipped)
    names = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in SCALE_KEYS] + ["update_scale"]
    changes = []
    for name in dict.fromkeys(names):
        if unused is not None and name in unused:
            continue
        if name in old and name in new and old[name] != new[name]:
            changes.append((name, old[name], new[name]))
    return changes


def step_text(changes: Sequence[tuple[str, Any, Any]], after: Mapping[str, Any] | None = None) -> str:
    """``method svd_lora → adalora (score random, init_r 16)`` or ``orth_reg_weight 0.0 → 0.1``: a step's changes,
    the settings a new method brings in brackets."""
    parts = []
    for name, old, new in changes:
        label = "c (update scale)" if name == "update_scale" else name
        text = f"{label} {_value(old)} → {_value(new)}"
        if name == "method" and after is not None and new == "adalora":
            text += f" (score {after.get('score')}, init_r {after.get('init_r')} → target_r {after.get('target_r')})"
        parts.append(text)
    return "; ".join(parts) or "nothing"


def _value(value: Any) -> str:
    return format(value, "g") if isinstance(value, float) else str(value)


def chain(steps: Sequence[Step]) -> list[str]:
    """The rows from the first row to the last, following each row's parent back: the waterfall's path."""
    parents = {step.row: step.parent for step in steps}
    path = [steps[-1].row] if steps else []
    while path and parents[path[-1]] is not None:
        path.append(parents[path[-1]])
    return path[::-1]
