"""Per-example moments of the AdaLoRA adapter gradient, collected with hooks during the ordinary backward pass.

For every adapter entry w (λ, P and Q of every adapted matrix) and the N examples of one optimizer step (every
micro-batch, every process), the collector accumulates Σ_n g_n, Σ_n g_n² and N, where g_n = ∂ℓ_n/∂w is the
gradient of example n's own loss, and :meth:`PerExampleGradients.consume` returns
m1 = (1/N) Σ_n g_n and m2 = (1/N) Σ_n g_n² as :class:`~adalora_scores.scores.base.GradientMoments`.
An example is a row of the batch (a sentence or pair for classification and regression, a window/feature for
SQuAD, a sequence for a causal LM). The orthogonal regulariser is not seen: PEFT adds it to the loss from the
parameters directly, not through the layers' outputs.

How (per-example gradients of a linear layer from its input and output gradient: Goodfellow, arXiv:1510.01799,
2015; Opacus' ``linear`` grad sampler). Per adapted ``SVDLinear`` call:

* a forward hook on ``lora_dropout[adapter]`` keeps x̃, the dropout output the layer actually used (the same
  dropout sample; autograd saves it for the LoRA matmul anyway, so holding it costs no memory);
* a forward hook on the layer registers a tensor hook on its output (only when the output requires grad);
  the tensor hook receives δy and turns (x̃, δy) into the layer's per-example gradients with the einsums of
  :mod:`.svd_gradients`, then adds their sum and sum of squares into two flat buffers.

Nothing is recomputed and no extra forward or backward runs. Per-example gradients exist for one layer at a time.

Rescaling. The hooks see gradients of the loss that was back-propagated. If each micro-batch's loss is the mean
over its B rows, divided by ``loss_divisor`` (the gradient-accumulation count) and multiplied by ``loss_scale``
(fp16 loss scaling), the hook's per-example gradient is loss_scale / (loss_divisor · B) · g_n, so::

    g_n = (loss_divisor · B / loss_scale) · hook gradient            (loss_reduction="mean")
    g_n = (loss_divisor / loss_scale) · hook gradient                 (loss_reduction="sum")

B is read from the rows of the layer inputs, so micro-batches of unequal size give the exact mean over all
examples of the step.

Causal LMs (``loss_reduction="token_mean"``). transformers' causal-LM loss is the mean over the *tokens* of the
micro-batch, not over its rows: with T_n the tokens of row n that have a label (``labels[n, 1:] != -100``: the
labels are shifted by one) and T = Σ_n T_n, the loss is Σ_n (T_n / T) ℓ_n, where ℓ_n is the mean over row n's own
tokens. Example n is the sequence, with loss ℓ_n (what a batch of one row would back-propagate), so::

    g_n = (loss_divisor · T / (loss_scale · T_n)) · hook gradient      (loss_reduction="token_mean")

T_n comes from the ``labels`` (or transformers' ``shift_labels``) keyword of the model's forward, and T from its
``num_items_in_batch`` keyword when given (transformers then divides the summed loss by it). A row without any
labelled token has no gradient and is not counted. Every sequence counts equally in m1 and m2, so m1 is the
mean of the per-sequence gradients, not the token-weighted mini-batch gradient (they agree when every row has
as many labelled tokens). Set ``loss_divisor`` and ``loss_scale`` before the forward pass of a micro-batch
(:meth:`~PerExampleGradients.set_loss_divisor`, :meth:`~PerExampleGradients.set_loss_scale`); each forward pass
of the model given to the collector (with gradients enabled) starts a new micro-batch with the current values.

Several calls, one gradient. A layer called more than once for the same examples (DeBERTa's ``query_proj`` and
``key_proj``: the tokens and the relative-position embeddings, :mod:`.shared_inputs`) gets
per-example gradients that are the sum over its calls; they are squared only when every call's gradient has
arrived (or at the end of the micro-batch, for a call whose output did not reach the loss). For the
relative-position call only the rows the attention indexed enter the products (the others have zero gradient;
:meth:`~adalora_scores.adapter.per_example.shared_inputs.SharedProjectionContext.used_rows`).

Gradient checkpointing runs the forward pass again during backward. Non-reentrant: the tensor hooks on the
recomputed outputs never fire (autograd back-propagates through the first graph), so every call counts once.
Reentrant: the first forward runs without gradients, so only the recomputed calls register hooks.

Why not Opacus or BackPACK. Opacus' hand-written grad samplers key on module types (``nn.Linear``); PEFT's
``SVDLinear`` keeps A, B and E in ``ParameterDict``s and multiplies them in its own forward, so Opacus would fall
back to its functorch sampler, which re-runs each layer's forward and backward per example, and it stores a
``grad_sample`` of shape (N, …) for every parameter (85 M floats for DeBERTa-v3-base at rank 16 and N = 32).
BackPACK needs every module on the path to be "extended" with its own derivatives and has none for ``SVDLinear``
or for DeBERTa's attention. The einsums above are the 10-line part of either library we need.

With ``torch.distributed`` initialised, :meth:`~PerExampleGradients.consume` all-reduces the sums and the count
before dividing.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from adalora_scores.adapter.per_example.shared_inputs import (
    SharedProjectionContext,
    patch_relative_attention,
    relative_attention_modules,
)
from adalora_scores.adapter.per_example.state import AdaptedLayer, CallGroup, MicroBatch, find_adapted_layers
from adalora_scores.adapter.per_example.svd_gradients import ExampleGradients, svd_example_gradients
from adalora_scores.allocation.layout import TripletLayout
from adalora_scores.scores.base import GradientMoments

__all__ = ["PerExampleGradients"]

LOSS_REDUCTIONS = ("mean", "sum", "token_mean")
IGNORE_INDEX = -100
"""The label of a token outside the loss (transformers' ``ignore_index``)."""


class PerExampleGradients:
    """Collects per-example moments of the adapter gradient of a PEFT AdaLoRA model (see the module docstring).

    Usage, once per optimizer step::

        collector = PerExampleGradients(model, allocator.layout, loss_divisor=accumulation_steps)
        for micro_batch in step_batches:
            collector.set_loss_scale(scaler.get_scale())     # only with fp16 loss scaling
            loss = model(**micro_batch).loss / accumulation_steps
            scaler.scale(loss).backward()
        moments = collector.consume()                         # or collector.discard() for a skipped step

    Args:
        model: the module the training loop calls (a ``PeftModel``, its ``AdaLoraModel``, or a wrapper whose
            forward calls it); its forward pass marks the start of a micro-batch.
        layout: the :class:`~adalora_scores.allocation.TripletLayout` of the adapter (``allocator.layout``); the
            moments come in its flat order.
        loss_divisor: what each micro-batch's loss is divided by before backward (the accumulation count).
        loss_scale: the fp16 loss scale the loss is multiplied by (1 without loss scaling).
        loss_reduction: ``"mean"`` if the model's loss averages over the rows of the batch (transformers'
            classification, regression and question-answering heads), ``"sum"`` if it adds them,
            ``"token_mean"`` if it averages over the labelled tokens of the batch (transformers' causal-LM heads;
            the model must then be called with ``labels=``; see the module docstring).

    Raises:
        ValueError: a matrix of ``layout`` is not an AdaLoRA layer of ``model``, or a bad option.
    """

    def __init__(
        self,
        model: nn.Module,
        layout: TripletLayout,
        *,
        loss_divisor: float = 1.0,
        loss_scale: float = 1.0,
        loss_reduction: str = "mean",
    ) -> None:
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"loss_reduction must be one of {LOSS_REDUCTIONS}, got {loss_reduction!r}.")
        self.layout = layout
        self.loss_reduction = loss_reduction
        self.set_loss_divisor(loss_divisor)
        self.set_loss_scale(loss_scale)
        self._sums = torch.zeros(2, layout.numel, dtype=torch.float32, device=layout.device)
        self._count = 0
        self._micro_batch: MicroBatch | None = None
        self._shared: SharedProjectionContext | None = None
        self._partial: list[CallGroup] = []
        self._handles: list[Any] = [model.register_forward_pre_hook(self._on_model_forward, with_kwargs=True)]
        self._layers = find_adapted_layers(model, layout)
        for layer in self._layers:
            dropout = layer.module.lora_dropout[layer.adapter]
            self._handles.append(dropout.register_forward_hook(self._dropout_hook(layer)))
            self._handles.append(layer.module.register_forward_hook(self._layer_hook(layer)))
        adapted = {layer.module for layer in self._layers}
        self._patched = [m for m in relative_attention_modules(model) if adapted & set(m.children())]
        for attention in self._patched:
            patch_relative_attention(attention, self._enter_shared)

    # -- public API --------------------------------------------------------------------------------------------
    def set_loss_divisor(self, loss_divisor: float) -> None:
        """What each micro-batch's loss is divided by (gradient accumulation); read at each forward pass."""
        if not (isinstance(loss_divisor, (int, float)) and loss_divisor > 0):
            raise ValueError(f"loss_divisor must be a positive number, got {loss_divisor!r}.")
        self.loss_divisor = float(loss_divisor)

    def set_loss_scale(self, loss_scale: float) -> None:
        """The fp16 loss scale of the next backward pass (``GradScaler.get_scale()``); read at each forward pass."""
        if not (isinstance(loss_scale, (int, float)) and loss_scale > 0):
            raise ValueError(f"loss_scale must be a positive number, got {loss_scale!r}.")
        self.loss_scale = float(loss_scale)

    def consume(self) -> GradientMoments:
        """Moments over every example since the last :meth:`consume` / :meth:`discard`, then reset.

        Call after the last backward pass of the optimizer step. With ``torch.distributed`` initialised every
        process must call it (it all-reduces).

        Raises:
            RuntimeError: no example's gradient was collected.
        """
        self._close_micro_batch()
        sums = self._sums
        count = torch.tensor([float(self._count)], dtype=torch.float64, device=sums.device)
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(sums)
            dist.all_reduce(count)
        examples = int(count.item())
        if examples == 0:
            raise RuntimeError(
                "no per-example gradients were collected since the last consume(): run forward (through the model "
                "given to PerExampleGradients, with gradients enabled) and backward before consume()."
            )
        moments = GradientMoments(mean=sums[0] / examples, mean_square=sums[1] / examples, count=examples)
        self.discard()
        return moments

    def to(self, device: torch.device | str) -> PerExampleGradients:
        """Move the running sums (values kept) to ``device``; returns self. The collector also follows the batch's
        device by itself at every forward pass (accelerate and Trainer move a model attached on the CPU to the GPU
        after :func:`~adalora_scores.attach`)."""
        if self._sums.device != torch.device(device):
            self._sums = self._sums.to(device)
        return self

    def discard(self) -> None:
        """Forget everything collected since the last :meth:`consume` (a skipped or non-finite step)."""
        self._close_micro_batch()
        self._sums.zero_()
        self._count = 0

    def close(self) -> None:
        """Remove every hook and restore DeBERTa's attention methods."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for attention in self._patched:
            del attention.disentangled_attention_bias
        self._patched.clear()
        self._micro_batch = None

    def __enter__(self) -> PerExampleGradients:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- set-up ------------------------------------------------------------------------------------------------
    def _on_model_forward(self, module: nn.Module, args: Any, kwargs: dict[str, Any]) -> None:
        if torch.is_grad_enabled():
            batch = next((v for v in (*args, *kwargs.values()) if isinstance(v, Tensor)), None)
            if batch is not None:
                self.to(batch.device)  # before adding the previous micro-batch's pending gradients
            self._close_micro_batch()
            self._micro_batch = MicroBatch(self.loss_divisor, self.loss_scale)
            if self.loss_reduction == "token_mean":
                self._micro_batch.row_factors, self._micro_batch.counted = self._token_factors(kwargs)

    @staticmethod
    def _token_factors(kwargs: dict[str, Any]) -> tuple[Tensor, int]:
        """Per row n, T / T_n (0 for a row without labelled tokens), and the number of rows with labelled tokens."""
        shifted = kwargs.get("shift_labels")
        labels = kwargs.get("labels")
        if shifted is None and labels is None:
            raise ValueError(
                "loss_reduction='token_mean' reads each row's token count from the labels: call the model with "
                "labels=... (or shift_labels=...) as a keyword argument."
            )
        counted = (shifted if shifted is not None else labels[:, 1:]) != IGNORE_INDEX
        tokens = counted.sum(dim=1).to(torch.float32)
        total = kwargs.get("num_items_in_batch")
        total = tokens.sum() if total is None else torch.as_tensor(total, dtype=torch.float32, device=tokens.device)
        factors = torch.where(tokens > 0, total / tokens.clamp(min=1), torch.zeros_like(tokens))
        return factors, int((tokens > 0).sum())

    def _enter_shared(self, context: SharedProjectionContext | None) -> None:
        self._shared = context

    def _dropout_hook(self, layer: AdaptedLayer):
        def hook(module: nn.Module, args: Any, output: Tensor) -> None:
            layer.dropped_input = output

        return hook

    def _layer_hook(self, layer: AdaptedLayer):
        def hook(module: nn.Module, args: Any, output: Any) -> Tensor | None:
            dropped, layer.dropped_input = layer.dropped_input, None
            micro_batch = self._micro_batch
            if dropped is None or micro_batch is None or not isinstance(output, Tensor) or not output.requires_grad:
                return None
            shared = self._shared
            if shared is not None:
                output = shared.expand(output, layer.name)
                group = layer.latest_group() if layer.latest_group is not None else None
                if group is None or group.micro_batch is not micro_batch or group.examples != output.shape[0]:
                    group = CallGroup(layer, micro_batch, output.shape[0])
            else:
                examples = output.shape[0]
                if micro_batch.examples is None:
                    micro_batch.examples = examples
                elif micro_batch.examples != examples:
                    raise RuntimeError(
                        f"{layer.name} ran on {examples} rows in a micro-batch of {micro_batch.examples} examples: "
                        "its input is not one row per example (an input shared by the batch?), so per-example "
                        "statistics would be wrong for it."
                    )
                group = CallGroup(layer, micro_batch, examples)
                layer.latest_group = weakref.ref(group)
            slot = group.expected
            group.expected += 1
            group.inputs.append(dropped)
            output.register_hook(lambda grad: self._on_output_gradient(group, slot, grad, shared))
            return output

        return hook

    def _on_output_gradient(
        self, group: CallGroup, slot: int, grad: Tensor, shared: SharedProjectionContext | None
    ) -> None:
        layer, module = group.layer, group.layer.module
        dropped, group.inputs[slot] = group.inputs[slot], None
        if dropped is None:  # the same output back-propagated twice (retain_graph): counted once
            return
        if shared is not None and grad.dim() == 3:
            rows = shared.used_rows(grad.shape[1])  # the relative positions the attention used; the rest are 0
            if rows is not None:
                dropped, grad = dropped[:, rows], grad[:, rows]
        adapter = layer.adapter
        coefficient = module.scaling[adapter] / (module.ranknum[adapter].detach().float() + 1e-5)
        gradients = svd_example_gradients(
            dropped, grad, module.lora_A[adapter], module.lora_E[adapter], module.lora_B[adapter], coefficient
        )
        group.micro_batch.received = True
        group.received += 1
        if group.expected == 1:
            self._accumulate(group, gradients)
            return
        if group.buffer is None:
            group.buffer = gradients
            self._partial.append(group)
        else:
            for total, part in zip(group.buffer, gradients, strict=True):
                total.add_(part)
        if group.received == group.expected:
            self._partial.remove(group)
            self._accumulate(group, group.buffer)
            group.buffer = None

    # -- accumulation --------------------------------------------------------------------------------------------
    def _accumulate(self, group: CallGroup, gradients: ExampleGradients) -> None:
        """Add Σ_n g_n and Σ_n g_n² of one layer, with g_n = factor · (hook gradient) (module docstring)."""
        micro_batch = group.micro_batch
        factor = micro_batch.loss_divisor / micro_batch.loss_scale
        if self.loss_reduction == "mean":
            factor *= micro_batch.examples or group.examples
        rows = None  # token_mean: the per-row factors T / T_n
        if micro_batch.row_factors is not None:
            rows = micro_batch.row_factors.to(device=self._sums.device) * factor
            if rows.shape[0] != group.examples:
                raise RuntimeError(
                    f"{group.layer.name}: {group.examples} rows, but the labels have {rows.shape[0]}; "
                    "loss_reduction='token_mean' needs one row of labels per example."
                )
        for part, where in zip(gradients, group.layer.slices, strict=True):
            # reduce over the examples first, in the part's own layout (G_B is a transposed view), then flatten
            if rows is None:
                self._sums[0, where].add_(part.sum(dim=0).reshape(-1), alpha=factor)
                self._sums[1, where].add_(part.square().sum(dim=0).reshape(-1), alpha=factor * factor)
            else:
                self._sums[0, where].add_(torch.tensordot(rows, part, dims=1).reshape(-1))
                self._sums[1, where].add_(torch.tensordot(rows.square(), part.square(), dims=1).reshape(-1))

    def _close_micro_batch(self) -> None:
        """Square the groups still waiting for a call that never reached the loss, and count the examples."""
        for group in self._partial:
            self._accumulate(group, group.buffer)
            group.buffer = None
        self._partial.clear()
        micro_batch, self._micro_batch = self._micro_batch, None
        if micro_batch is not None and micro_batch.received:
            self._count += micro_batch.counted if micro_batch.counted is not None else micro_batch.examples or 0
