"""Per-example gradients of one AdaLoRA SVD layer, from its dropped-out input and its output gradient.

PEFT's ``SVDLinear`` (``peft/tuners/adalora/layer.py``) adds to the frozen layer's output::

    y = base(x) + c · x̃ (A ∘ E)ᵀ Bᵀ,     x̃ = dropout(x),     c = scaling / (ranknum + 1e-5)

with A = ``lora_A`` (Q, r × d_in), E = ``lora_E`` (λ, r × 1, broadcast over the columns of A) and B = ``lora_B``
(P, d_out × r). With u = x̃ (A ∘ E)ᵀ and δy = ∂L/∂y, the gradient of example n sums over its tokens t
(Goodfellow, "Efficient Per-Example Gradient Computations", arXiv:1510.01799, 2015; the einsum form of Opacus'
``linear`` grad sampler, pytorch/opacus ``opacus/grad_sample/linear.py``)::

    G_B,n     = c Σ_t δy_{n,t} u_{n,t}ᵀ                      (d_out × r)
    δu_{n,t}  = c δy_{n,t} B                                   (r)
    G_{A∘E},n = Σ_t δu_{n,t} x̃_{n,t}ᵀ                         (r × d_in)
    G_A,n     = G_{A∘E},n ∘ E,      G_E,n[i] = Σ_j G_{A∘E},n[i, j] A[i, j] = Σ_t δu_{n,t}[i] v_{n,t}[i]

with v = x̃ Aᵀ (so u = v ∘ Eᵀ): the last form sums over the T tokens instead of the d_in columns.

The layer's weight layout (``nn.Linear`` or GPT-2's transposed ``Conv1D``, ``fan_in_fan_out``) does not enter:
PEFT's LoRA branch is the same product for both. Only the rows of one layer exist at a time, never the
per-example gradient of the whole adapter.
"""

from __future__ import annotations

from typing import NamedTuple

from torch import Tensor

__all__ = ["ExampleGradients", "svd_example_gradients"]


class ExampleGradients(NamedTuple):
    """Per-example gradients of one SVD layer, each with a leading example dimension N."""

    right: Tensor  # G_A, (N, r, d_in), PEFT lora_A (Q)
    left: Tensor  # G_B, (N, d_out, r), PEFT lora_B (P); may be a non-contiguous view
    value: Tensor  # G_E, (N, r, 1), PEFT lora_E (λ)


def svd_example_gradients(
    dropped_input: Tensor,
    output_grad: Tensor,
    right: Tensor,
    value: Tensor,
    left: Tensor,
    coefficient: Tensor | float,
) -> ExampleGradients:
    """Per-example gradients of A, B and E (formulas in the module docstring), in float32.

    Args:
        dropped_input: x̃, the dropout output the layer used: (N, d_in), (N, T, d_in) or (N, ..., d_in). A leading
            size of 1 with ``output_grad`` of N > 1 rows means one input shared by all N examples (DeBERTa's
            relative-position embeddings).
        output_grad: δy for the same call, (N, ..., d_out): the gradient of each example's own loss (the caller
            rescales for the loss reduction).
        right, value, left: A (r, d_in), E (r, 1), B (d_out, r).
        coefficient: c = scaling / (ranknum + 1e-5).
    """
    examples = output_grad.shape[0]
    grad = output_grad.float().reshape(examples, -1, output_grad.shape[-1])  # (N, T, d_out)
    inputs = dropped_input.float()
    inputs = inputs.reshape(inputs.shape[0], -1, inputs.shape[-1])  # (N or 1, T, d_in)
    if inputs.shape[0] == 1 and examples > 1:
        inputs = inputs[0]  # (T, d_in): matmul broadcasts the shared rows without copying them N times
    right, value, left = right.detach().float(), value.detach().float(), left.detach().float()
    # Products are ordered so that no (N, T, d) operand needs a copy: the output gradient is used transposed,
    # (N, d_out, T), which is contiguous for DeBERTa's relative-position path (it arrives as (N, d_out, 2k) memory)
    # and a plain transposed matrix for BLAS otherwise; δu is formed transposed, (N, r, T).
    grad_t = grad.transpose(1, 2)  # δyᵀ, (N, d_out, T)
    plain = inputs @ right.T  # v = x̃ Aᵀ, (N or -, T, r)
    projected = plain * value.T  # u = x̃ (A ∘ E)ᵀ = v ∘ Eᵀ
    # G_B as (uᵀ δy)ᵀ: the (N, r, d_out) product reads δy once in its own layout (faster than δyᵀ u for the wide
    # FFN and relative-position gradients, benchmarks/per_example.py); returned as a transposed view.
    grad_left = (projected.transpose(-1, -2) @ grad).mul_(coefficient).transpose(1, 2)  # G_B, (N, d_out, r)
    grad_projected_t = (left.T @ grad_t).mul_(coefficient)  # δuᵀ, (N, r, T)
    grad_product = grad_projected_t @ inputs  # G_{A∘E}, (N, r, d_in)
    # G_E[n, i] = Σ_j G_{A∘E}[n, i, j] A[i, j] = Σ_t δu[n, t, i] v[n, t, i]: over T entries instead of d_in
    grad_value = (grad_projected_t * plain.transpose(-1, -2)).sum(dim=2, keepdim=True)  # (N, r, 1)
    return ExampleGradients(right=grad_product.mul_(value), left=grad_left, value=grad_value)
