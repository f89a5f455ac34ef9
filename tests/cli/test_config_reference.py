"""``docs/config.md`` is generated from ``TrainConfig`` and up to date; the valid values it states are the checks'
own words, and hold."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from adalora_scores.cli.config_reference import REGENERATE, field_sources, reference_text, valid_values
from adalora_scores.config import TrainConfig

ROOT = Path(__file__).parents[2]


def test_docs_config_md_is_the_generated_text():
    written = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    assert written == reference_text(), f"docs/config.md is out of date: run `{REGENERATE}` in the checkout"


def test_every_key_has_its_row_and_section():
    text = reference_text()
    for item in dataclasses.fields(TrainConfig):
        assert text.count(f"\n| [`{item.name}`](#{item.name}) |") == 1, item.name
        assert f"\n### `{item.name}`\n" in text, item.name
    row = next(line for line in text.splitlines() if line.startswith("| [`learning_rate`]"))
    assert row == "| [`learning_rate`](#learning_rate) | `float` | `0.001` | > 0 |"
    row = next(line for line in text.splitlines() if line.startswith("| [`target_modules`]"))
    assert row == "| [`target_modules`](#target_modules) | `str \\| list[str] \\| None` | `null` | any |"
    assert "| [`task`](#task) | `str` | none: required | a registered task: causal_lm, classification," in text
    assert "| `tinit` | [`budget_warmup`](#budget_warmup) |" in text


def test_a_field_without_a_docstring_is_named():
    @dataclasses.dataclass
    class Undocumented:
        documented: int = 1
        """Has one."""
        update_scale: float | None = None

    with pytest.raises(ValueError, match=r"Undocumented.update_scale has no docstring.*config_reference docs/config"):
        field_sources(Undocumented)
    assert field_sources(TrainConfig)["init_r"].annotation == "int"


@pytest.mark.parametrize(
    "name,rule",
    [
        ("learning_rate", "> 0"),
        ("lr_warmup_ratio", "in [0, 1)"),
        ("target_r", "between 0 and init_r; the budget only shrinks"),
        ("mixed_precision", "'no', 'fp16' or 'bf16'"),
        ("load_in_4bit", "true or false"),
        ("checkpoint_every", ">= 0 (0: none; null: every 10% of the run)"),
        ("beta1", "an EMA coefficient in [0, 1)"),
        ("log_every", "a positive integer"),
        ("seed", None),
        ("lora_alpha", None),
    ],
)
def test_valid_values_are_the_checks_words(name, rule):
    assert valid_values(name) == rule


@pytest.mark.parametrize(
    "name,bad,good,message",
    [
        ("lora_dropout", 1.0, 0.5, r"lora_dropout must be in \[0, 1\), got 1.0"),
        ("beta2", 1.0, 0.0, r"beta2 must be an EMA coefficient in \[0, 1\), got 1.0; AdaLoRA's is 0.85"),
        ("weight_decay", -0.1, 0.0, r"weight_decay must be >= 0, got -0.1"),
        ("max_grad_norm", -1.0, 0.0, r"max_grad_norm must be >= 0"),
        ("orth_reg_weight", -0.5, 0.0, r"orth_reg_weight must be >= 0"),
        ("log_every", 0, 1, r"log_every must be a positive integer, got 0"),
        ("max_train_samples", 0, 1, r"max_train_samples must be a positive integer or null \(all\), got 0"),
        ("max_eval_samples", -3, None, r"max_eval_samples must be a positive integer or null"),
    ],
)
def test_the_new_checks_refuse_the_bad_value_and_keep_the_edge(name, bad, good, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(task="mrpc", **{name: bad})
    assert getattr(TrainConfig(task="mrpc", **{name: good}), name) == good


def test_every_stated_range_refuses_what_it_excludes():
    """For each key with a numeric range, a value just outside is refused and one at the edge is accepted."""
    text = reference_text()
    ranges = dict(re.findall(r"^\| \[`(\w+)`\]\(#\w+\) \| `[^`]+` \| [^|]+ \| ([^|]+) \|$", text, flags=re.M))
    edges = {"> 0": (0, 1e-9), ">= 0": (-1e-9, 0), ">= 1": (0, 1), "in [0, 1)": (1, 0), "a positive integer": (0, 1)}
    checked = 0
    for name, rule in ranges.items():
        rule = rule.strip()
        if rule in edges:
            outside, edge = edges[rule]
            others = {"task": "mrpc", "target_r": 0} if name != "target_r" else {"task": "mrpc"}  # init_r=1 fits
            with pytest.raises(ValueError, match=rf"^{name} "):
                TrainConfig(**others, **{name: outside})
            TrainConfig(**others, **{name: edge})
            checked += 1
    assert checked >= 14  # num_epochs, learning_rate, the positive integers, the [0, 1) and >= 0 keys
