"""DeBERTa's relative-position projections: adapted layers whose input is shared by every example of the batch.

In transformers' ``DisentangledSelfAttention.disentangled_attention_bias`` (DeBERTa-v2/v3), with
``share_att_key=True``, ``query_proj`` and ``key_proj`` also project the relative-position embeddings, a
(1, 2k, d) tensor, and the result is tiled over the batch::

    pos_query_layer = transpose_for_scores(query_proj(rel_embeddings)).repeat(batch, 1, 1)

``repeat``'s backward sums its B copies, so the gradient reaching the projection's output is Σ_n δy_n: per-example
statistics read there would be wrong (the square of a sum is not the sum of squares). The same holds for adapted
``pos_query_proj`` / ``pos_key_proj`` without ``share_att_key``.

The route: the projection runs once, on the (1, 2k, d) embeddings; a forward hook returns its output expanded to
(B, 2k, d_out), a stride-0 view whose tensor hook receives each example's own gradient before autograd sums it
(:class:`ExampleView`); only the band of rows the attention gathers enters the per-example products
(:meth:`SharedProjectionContext.used_rows`); and the model's ``repeat(B, 1, 1)`` that follows an expanded projection
is the identity inside ``disentangled_attention_bias``. Why this route, and the ones rejected:
``docs/architecture.md``, "Per-example gradients".
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

__all__ = ["ExampleView", "SharedProjectionContext", "patch_relative_attention", "relative_attention_modules"]


class ExampleView(torch.autograd.Function):
    """``tensor.expand(examples, ...)`` of a (1, ...) tensor whose backward sums the examples' gradients into a
    result laid out like one example's gradient (``torch.empty_like(grad[0])``), so the reduction reads memory in
    order whatever the gradient's strides (module docstring)."""

    @staticmethod
    def forward(ctx: Any, tensor: Tensor, examples: int) -> Tensor:
        return tensor.expand(examples, *tensor.shape[1:])

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        return torch.sum(grad, dim=0, out=torch.empty_like(grad[0])).unsqueeze(0), None


class SharedProjectionContext(TorchFunctionMode):
    """Active while one attention module computes its relative-position bias for a batch of ``examples``.

    The collector's forward hook calls :meth:`expand` on the output of every adapted projection run in this
    context; the next ``Tensor.repeat(examples, 1, 1)`` of a tensor that already holds ``examples · heads`` rows
    returns that tensor unchanged.
    """

    def __init__(self, examples: int, heads: int) -> None:
        super().__init__()
        self.examples = examples
        self.heads = heads
        self.pending = 0
        self._gathered: list[tuple[int, Tensor, Tensor]] = []  # (rows indexed, smallest index, largest index)
        self._unrestricted = False
        self._rows: dict[int, slice | None] = {}

    def used_rows(self, rows: int) -> slice | None:
        """The rows of a (…, ``rows``, d_out) projection output that can have a non-zero gradient: from the
        smallest to the largest index of every ``gather`` along the last dimension of a (…, ``rows``) tensor in
        this context; None (every row) if any gather indexed another dimension or size, or none was seen.

        Exact, not an approximation: in ``disentangled_attention_bias`` the relative-position projections reach
        the scores only through ``torch.gather`` of c2p/p2c attention along that dimension, so every row outside
        the indexed band gets a zero gradient and adds nothing to the per-example products. The band is 2T − 1
        of the 2k rows for T ≤ k tokens (255 of 512 at T = 128 with DeBERTa-v3's 256 buckets, 63 at T = 32). The
        band's two ends are read back to the host once per attention call, at the first backward use (a sync on a
        GPU).
        """
        if rows not in self._rows:
            sizes = {size for size, _, _ in self._gathered}
            if self._unrestricted or sizes != {rows}:
                self._rows[rows] = None
            else:
                low = min(int(smallest) for _, smallest, _ in self._gathered)
                high = max(int(largest) for _, _, largest in self._gathered)
                self._rows[rows] = slice(low, high + 1)
        return self._rows[rows]

    def _note_gather(self, args: tuple, kwargs: dict) -> None:
        names = ("input", "dim", "index")
        values = dict(zip(names, args, strict=False)) | {k: v for k, v in kwargs.items() if k in names}
        source, dim, index = values.get("input"), values.get("dim"), values.get("index")
        along_last = isinstance(source, Tensor) and isinstance(dim, int) and dim in (-1, source.dim() - 1)
        if not (along_last and isinstance(index, Tensor) and index.numel() > 0):
            self._unrestricted = True
            return
        # the index is usually an expanded view: read its stored values only
        stored = index[tuple(0 if stride == 0 else slice(None) for stride in index.stride())]
        self._gathered.append((source.shape[-1], stored.min(), stored.max()))

    def expand(self, output: Tensor, layer_name: str) -> Tensor:
        """The per-example view of a shared projection's (1, ..., d_out) output."""
        if output.shape[0] != 1:
            raise RuntimeError(
                f"{layer_name} ran inside disentangled_attention_bias on an input with {output.shape[0]} rows; "
                "per-example statistics expect the (1, 2k, d) relative-position embeddings there."
            )
        if self.examples == 1:
            return output
        self.pending += 1
        return ExampleView.apply(output, self.examples)

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        if func is torch.gather or func is torch.Tensor.gather:
            self._note_gather(args, kwargs or {})
        if func is torch.Tensor.repeat and self.pending:
            tensor, repeats = args[0], args[1:]
            if len(repeats) == 1 and isinstance(repeats[0], (tuple, list, torch.Size)):
                repeats = tuple(repeats[0])
            if tuple(repeats) == (self.examples, 1, 1) and tensor.shape[0] == self.examples * self.heads:
                self.pending -= 1
                return tensor
        return func(*args, **(kwargs or {}))


def patch_relative_attention(attention: nn.Module, enter: Callable[[SharedProjectionContext | None], None]) -> None:
    """Wrap ``attention.disentangled_attention_bias`` (an instance attribute; ``del`` restores the class method).

    ``enter(context)`` tells the collector which context is active (``None`` when it ends). The wrapper only acts
    while gradients are enabled.
    """
    original = attention.disentangled_attention_bias
    heads = attention.num_attention_heads

    def disentangled_attention_bias(self: nn.Module, query_layer: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if not torch.is_grad_enabled():
            return original(query_layer, *args, **kwargs)
        context = SharedProjectionContext(query_layer.shape[0] // heads, heads)
        enter(context)
        try:
            with context:
                bias = original(query_layer, *args, **kwargs)
        finally:
            enter(None)
        if context.pending:
            raise RuntimeError(
                f"{type(self).__name__}.disentangled_attention_bias no longer tiles each relative-position "
                "projection with repeat(batch, 1, 1); per-example statistics cannot attribute that path. Update "
                "adalora_scores.adapter.per_example.shared_inputs for the installed transformers version."
            )
        return bias

    attention.disentangled_attention_bias = types.MethodType(disentangled_attention_bias, attention)


def relative_attention_modules(model: nn.Module) -> list[nn.Module]:
    """Modules that project shared relative-position embeddings (DeBERTa-v2/v3's ``DisentangledSelfAttention``)."""
    return [
        module
        for module in model.modules()
        if callable(getattr(type(module), "disentangled_attention_bias", None))
        and hasattr(module, "num_attention_heads")
    ]
