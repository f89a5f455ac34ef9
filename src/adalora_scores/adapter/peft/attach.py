"""PEFT's AdaLoRA model: finding its triplets and replacing its rank allocator by one with a pluggable score.

PEFT's ``SVDLinear`` keeps, per adapter, ``lora_A`` (Q, r × d2), ``lora_E`` (λ, r × 1) and ``lora_B`` (P, d1 × r);
the layout's matrix names are the ``lora_E`` parameter names, which are PEFT's rank-pattern keys.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

from peft import PeftModel
from peft.tuners.adalora import AdaLoraModel
from peft.tuners.adalora.layer import AdaLoraLayer
from torch import nn

from adalora_scores.adapter.distributed.backend import Backend, resolve_backend
from adalora_scores.adapter.peft.peft_allocator import PeftRankAllocator
from adalora_scores.adapter.per_example.collector import PerExampleGradients
from adalora_scores.allocation.layout import AdaptedMatrix, TripletLayout
from adalora_scores.scores.base import Score, create_score, get_score_class

__all__ = ["adalora_model", "attach", "find_adapted_matrices", "validate_adalora_config"]


def adalora_model(model: nn.Module) -> AdaLoraModel:
    """The ``AdaLoraModel`` inside a ``PeftModel`` (or ``model`` itself); a clear TypeError for anything else."""
    inner = model.base_model if isinstance(model, PeftModel) else model
    if not isinstance(inner, AdaLoraModel):
        raise TypeError(
            f"expected a PEFT AdaLoRA model, got {type(model).__name__}"
            f"{'' if inner is model else ' wrapping ' + type(inner).__name__}. Build it with "
            "peft.get_peft_model(base_model, peft.AdaLoraConfig(...)); transformers' add_adapter() and "
            "peft.inject_adapter_in_model() drop the AdaLoraModel wrapper, and with it the rank allocation."
        )
    return inner


def validate_adalora_config(config: Any) -> None:
    """Raise a ValueError, naming the field and the fix, for ranks AdaLoRA cannot train. The schedule's own checks
    (a budgeting phase, ``deltaT >= 1``) run when it is built, in :func:`schedule_from_peft_config`."""
    if config.total_step is None or config.total_step <= 0:
        raise ValueError("AdaLoraConfig.total_step must be the positive number of optimizer steps of the run.")
    if config.target_r > config.init_r:
        raise ValueError(
            f"target_r ({config.target_r}) is above init_r ({config.init_r}); the budget can only shrink. "
            "Set target_r <= init_r."
        )
    if config.target_r < 0:
        raise ValueError(f"target_r must be >= 0, got {config.target_r}.")


def find_adapted_matrices(model: AdaLoraModel, adapter_name: str) -> list[AdaptedMatrix]:
    """Every SVD-adapted matrix of ``adapter_name``, keyed like PEFT's ``rank_pattern``."""
    matrices = []
    for module_name, module in model.model.named_modules():
        if isinstance(module, AdaLoraLayer) and adapter_name in module.lora_A:
            prefix = f"{module_name}." if module_name else ""
            matrices.append(
                AdaptedMatrix(
                    name=f"{prefix}lora_E.{adapter_name}",
                    right=module.lora_A[adapter_name],
                    value=module.lora_E[adapter_name],
                    left=module.lora_B[adapter_name],
                )
            )
    return sorted(matrices, key=lambda m: m.name)


def _build_score(score: str | Score | type[Score], config: Any, options: dict[str, Any]) -> Score:
    if isinstance(score, Score):
        if options:
            raise TypeError("score options are only accepted with a score name or class, not with a Score instance.")
        return score
    cls = score if isinstance(score, type) else get_score_class(score)
    accepted = inspect.signature(cls.__init__).parameters
    # AdaLoraConfig's beta1/beta2 are the defaults for scores that take them, as for PEFT's own allocator.
    for beta in ("beta1", "beta2"):
        if beta in accepted and beta not in options:
            options = {**options, beta: getattr(config, beta)}
    return create_score(cls.name, **options) if cls.name else cls(**options)


def attach(
    model: nn.Module,
    score: str | Score | type[Score] = "sensitivity",
    *,
    reactivation: bool = True,
    task_gradient_only: bool = False,
    loss_reduction: str | None = None,
    backend: Backend | str | None = None,
    **score_options: Any,
) -> PeftRankAllocator:
    """Replace the rank allocator of a PEFT AdaLoRA model by one that ranks triplets with ``score``.

    After this call PEFT's own ``model.base_model.update_and_allocate(step)`` drives our allocator, with its phases
    unchanged, and ``save_pretrained`` writes the resulting ``rank_pattern`` as usual.

    Args:
        model: a ``PeftModel`` from ``get_peft_model(base, AdaLoraConfig(...))``, or its ``AdaLoraModel``.
        score: a registered score name (see :func:`list_scores`), a Score subclass, or a Score instance.
        reactivation: allow pruned triplets to be re-selected at later allocations (AdaLoRA's behaviour).
        task_gradient_only: the score sees the task-loss gradient (the mean of the per-example gradients, before
            clipping) instead of ``p.grad``, which also holds the orthogonal regulariser's gradient.
        loss_reduction: how the model's loss reduces over the batch, for per-example gradients
            (:class:`~adalora_scores.adapter.per_example.collector.PerExampleGradients`): None derives it from the
            AdaLoraConfig's ``task_type``: ``"token_mean"`` for ``CAUSAL_LM`` (transformers' mean over labelled
            tokens; each sequence is one example), else ``"mean"`` (over rows).
        backend: how the adapter's parameters are split across processes
            (:mod:`adalora_scores.adapter.distributed.backend`): None takes accelerate's set-up in this process (a
            single process, DDP, FSDP2 or ZeRO-3); a loop that wraps the model itself without accelerate names it:
            ``"fsdp2"`` (``fully_shard``) or ``"zero3"`` (``deepspeed.initialize``).
        **score_options: constructor options of the score, e.g. ``beta=0.9``. ``beta1``/``beta2`` default to the
            AdaLoraConfig's values for scores that accept them.

    Returns:
        The new allocator (also at ``model.base_model.rankallocator``).

    Raises:
        TypeError: ``model`` is not a PEFT AdaLoRA model, or the score options are wrong.
        KeyError: unknown score name.
        ValueError: the AdaLoraConfig cannot train (no budgeting phase, target_r > init_r, ...).
        RuntimeError: accelerate is set up for FSDP1 or DeepSpeed ZeRO stages 0 - 2, which leave no full gradient in
            ``p.grad``, or for DeepSpeed with per-example gradients (a per-example score or ``task_gradient_only``).
    """
    inner = adalora_model(model)
    backend = resolve_backend(backend)  # refuses FSDP1 and ZeRO stages 0 - 2
    adapter_name = getattr(inner, "trainable_adapter_name", None)
    if adapter_name is None or not hasattr(inner, "rankallocator"):
        raise ValueError(
            "this AdaLoRA model has no trainable adapter (inference_mode=True or loaded for inference); "
            "rank allocation only applies while training."
        )
    config = inner.peft_config[adapter_name]
    validate_adalora_config(config)
    if isinstance(inner.rankallocator, PeftRankAllocator):  # attached before: its hooks go
        inner.rankallocator.close_per_example()
    if type(model) is PeftModel and config.orth_reg_weight > 0:
        warnings.warn(
            "this PeftModel has no task_type, so PEFT never calls AdaLoraModel.forward and the orthogonal "
            f"regulariser (orth_reg_weight={config.orth_reg_weight}) is not in the loss. Build it with "
            "AdaLoraConfig(task_type='SEQ_CLS') (or QUESTION_ANS, CAUSAL_LM, ...) to train AdaLoRA as published.",
            stacklevel=2,
        )
    if not isinstance(reactivation, bool):
        raise TypeError(f"reactivation must be True or False, got {reactivation!r}.")
    if not isinstance(task_gradient_only, bool):
        raise TypeError(f"task_gradient_only must be True or False, got {task_gradient_only!r}.")
    element_score = _build_score(score, config, score_options)
    layout = TripletLayout(find_adapted_matrices(inner, adapter_name), backend.parameter_access())
    per_example = None
    if element_score.gradient == "per_example" or task_gradient_only:
        backend.check_per_example()
        # hooks on the model the training loop calls; the loop (or AllocationCallback) sets the accumulation
        # divisor and the fp16 loss scale
        if loss_reduction is None:
            loss_reduction = "token_mean" if config.task_type == "CAUSAL_LM" else "mean"
        per_example = PerExampleGradients(model, layout, loss_reduction=loss_reduction)
    allocator = PeftRankAllocator(
        layout,
        element_score,
        config,
        adapter_name,
        reactivation=reactivation,
        task_gradient_only=task_gradient_only,
        per_example=per_example,
        backend=backend,
    )
    inner.rankallocator = allocator
    backend.prepare_adalora(inner)  # FSDP2: PEFT's regulariser would multiply parameter shards
    return allocator
