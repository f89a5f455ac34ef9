"""The answer in a generation, and exact match against a reference.

Default convention (GSM8K and MetaMathQA): MetaMathQA's responses end with "The answer is: 18" and GSM8K's with
"#### 18". The answer is the first number after the last "The answer is", else the last number in the text.
Numbers are compared as numbers: thousands separators and a trailing full stop are ignored, so "1,800" = "1800.0".
A custom ``answer_pattern`` (regex) takes its last match's first group (or the whole match without groups).
"""

from __future__ import annotations

import re

__all__ = ["extract_answer", "same_answer"]

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?|-?\.\d+")
_ANSWER_IS = re.compile(r"the answer is", re.IGNORECASE)


def extract_answer(text: str, pattern: str | None = None) -> str | None:
    """The answer in ``text`` (module docstring), or None where there is none."""
    if pattern is not None:
        matches = list(re.finditer(pattern, text))
        if not matches:
            return None
        last = matches[-1]
        return (last.group(1) if last.re.groups else last.group(0)).strip()
    marks = list(_ANSWER_IS.finditer(text))
    if marks:
        number = _NUMBER.search(text, marks[-1].end())
        if number is not None:
            return number.group(0)
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def _as_number(text: str) -> float | None:
    cleaned = text.strip().rstrip(".").replace(",", "").lstrip("$")
    try:
        return float(cleaned)
    except ValueError:
        return None


def same_answer(predicted: str | None, reference: str | None) -> bool:
    """Whether two extracted answers agree: equal as numbers when both are numbers, else equal as stripped text."""
    if predicted is None or reference is None:
        return False
    left, right = _as_number(predicted), _as_number(reference)
    if left is not None and right is not None:
        return abs(left - right) <= 1e-6 * max(1.0, abs(right))
    return predicted.strip() == reference.strip()
