"""Tolerances for comparing two float computations of the same quantity, each derived from its reason.

Two float32 computations of one sum of n terms in different orders (batched einsums against one backward pass per
example, another BLAS kernel or thread count, another CPU's vector width) differ by at most about
n · eps · Σ|terms| (Higham, *Accuracy and Stability of Numerical Algorithms*, 2nd ed., §4.2: the error of recursive
summation is at most γ_{n−1} Σ|x_i|, γ_k = k·u/(1 − k·u), u = eps/2; two such sums differ by at most twice that).
A test names n, the length of the longest reduction that produces a compared entry, and the scale of its terms;
:func:`reordered_sums` turns them into ``torch.testing.assert_close`` keywords. This is a worst-case bound, so it
holds on any CPU, where a tolerance picked from one machine's observed error does not.
"""

from __future__ import annotations

import torch

FLOAT32_EPS = torch.finfo(torch.float32).eps
"""2⁻²³ ≈ 1.19e-7: the spacing of float32 numbers at 1."""


def reordered_sums(terms: int, scale: float, dtype: torch.dtype = torch.float32) -> dict[str, float]:
    """``rtol``/``atol`` for entries that are sums of ``terms`` products computed in two orders in ``dtype``:
    rtol = eps · terms for the large entries, atol = eps · terms · ``scale`` for the entries where the sum cancels
    (``scale`` stands for the size of the terms: the largest |entry| of the expected tensor)."""
    bound = torch.finfo(dtype).eps * terms
    return {"rtol": bound, "atol": bound * scale}


def assert_reordered(got: torch.Tensor, expected: torch.Tensor, terms: int) -> None:
    """``got`` equals ``expected`` up to the reordering of sums of ``terms`` products (:func:`reordered_sums`, with
    the largest |expected| as the scale of the terms)."""
    torch.testing.assert_close(got, expected, **reordered_sums(terms, float(expected.abs().max())))
