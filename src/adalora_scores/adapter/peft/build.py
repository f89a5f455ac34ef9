"""Wrap a model for training: AdaLoRA with a pluggable score, or a baseline without allocation.

* ``adalora``: P Λ Q at ``init_r``, the regulariser, and the score's allocation down to ``target_r`` on average;
* ``svd_lora``: the same P Λ Q parameterisation and regulariser at rank ``target_r`` on every matrix, with no
  schedule and no allocation (the AdaLoRA paper's "SVD-LoRA" ablation, Zhang et al., ICLR 2023, §4.4 / Table 4),
  so it has the parameter count of AdaLoRA's final budget and differs from it only in the allocation. Its update is
  scaled by α / ``target_r`` (PEFT's AdaLoRA divides by the initial rank, which here is ``target_r``);
* ``lora``: plain LoRA of rank ``target_r`` (B A, scaled by α / r).

All use the same target modules, head (``modules_to_save``), α and dropout, so their rows differ only in the
adapter. Parameter counts (what the tables show per row):

* AdaLoRA and SVD-LoRA: Σ_m r_m (d1_m + d2_m + 1) over the adapted matrices, r_m the kept rank (λ counted),
  initially init_r (SVD-LoRA: target_r throughout);
* LoRA: Σ_m r (d1_m + d2_m).

The fully trained head is counted separately (``head_parameters``). :class:`AdaptedModel` is everything the
training engine needs from PEFT: the allocation call, the state to checkpoint, and saving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from peft import AdaLoraConfig, LoraConfig, get_peft_model

from adalora_scores.adapter.distributed.backend import Backend, resolve_backend
from adalora_scores.adapter.distributed.fsdp import check_savable
from adalora_scores.adapter.distributed.single import SingleProcessBackend
from adalora_scores.adapter.peft.attach import adalora_model, attach
from adalora_scores.adapter.peft.peft_allocator import PeftRankAllocator
from adalora_scores.adapter.peft.quantization import check_four_bit_layers, guard_cpu_repacking, is_four_bit
from adalora_scores.adapter.peft.saving import save_adapter
from adalora_scores.adapter.peft.spec import AdapterSpec
from adalora_scores.adapter.peft.targets import needs_fan_in_fan_out, resolve_target_modules
from adalora_scores.allocation.ranking import churn
from adalora_scores.scores.base import get_score_class

__all__ = ["AdaptedModel", "build_adalora", "build_adapted_model", "build_lora", "build_svd_lora"]


@dataclass
class AdaptedModel:
    model: Any
    """The PEFT model."""
    allocator: PeftRankAllocator | None
    """The rank allocator (AdaLoRA) or None (the baselines: LoRA, SVD-LoRA)."""
    lora_shapes: dict[str, tuple[int, int, int]]
    """Baselines only: matrix name → (rank, out_features, in_features)."""
    churn: float | None = None
    """At the last allocation: |K_t \\ K_{t−1}| / |K_t|, the share of the kept triplets that were not kept at the
    allocation before (None before a second allocation of this process)."""
    _previous_kept: frozenset[int] | None = None
    singular_values: bool = False
    """The baseline keeps a λ per rank (SVD-LoRA): one more parameter per rank and matrix."""
    backend: Backend = field(default_factory=SingleProcessBackend)
    """How the model's parameters are split across processes (chosen once, when the model was built)."""

    def allocate(self, step: int) -> None:
        """PEFT's ``update_and_allocate(step)``: call after ``optimizer.step()`` and before ``zero_grad()``, with
        ``step`` = optimizer steps completed (1 … T). Nothing to do for LoRA."""
        if self.allocator is not None:
            adalora_model(self.model).update_and_allocate(step)

    def before_micro_batch(self, scaler: Any = None) -> None:
        """Before each micro-batch's forward: hand the fp16 loss scale (``GradScaler``) to the per-example hooks."""
        if scaler is not None and self.allocator is not None and self.allocator.per_example is not None:
            self.allocator.per_example.set_loss_scale(float(scaler.get_scale()))

    def discard_step(self) -> None:
        """The optimizer skipped this step (fp16 overflow, ``nonfinite=skip``): nothing of it is observed."""
        if self.allocator is not None:
            self.allocator.discard_step()

    def allocation_header(self) -> dict[str, Any] | None:
        """The first record of ``allocations.jsonl``: every matrix and its initial rank, in the kept strings' order."""
        if self.allocator is None:
            return None
        layout = self.allocator.layout
        return {"matrices": [[name, rank] for name, rank in zip(layout.names, layout.ranks, strict=True)]}

    def allocation_record(self, step: int) -> dict[str, Any] | None:
        """The allocation optimizer step ``step`` made, for ``allocations.jsonl`` (None if it made none)."""
        event = None if self.allocator is None else self.allocator.last_event
        if event is None or event.step != step:
            return None
        keep = self.allocator.keep.tolist()
        current = frozenset(index for index, kept in enumerate(keep) if kept)
        if self._previous_kept is not None:
            self.churn = churn(self._previous_kept, current)
        self._previous_kept = current
        return {"step": step, "budget": event.budget, "kept": "".join("1" if k else "0" for k in keep)}

    def final_triplet_scores(self, step: int) -> dict[str, Any] | None:
        """At the final allocation (T − t_f), the triplet scores it ranked, per matrix."""
        allocator = self.allocator
        if allocator is None or step != allocator.schedule.final_step or allocator.last_triplet_scores is None:
            return None
        by_matrix = allocator.layout.split_by_matrix(allocator.last_triplet_scores.float().cpu())
        return {"step": step, "scores": {name: values.tolist() for name, values in by_matrix.items()}}

    def ranks(self) -> dict[str, int]:
        if self.allocator is not None:
            return self.allocator.ranks()
        return {name: rank for name, (rank, _, _) in self.lora_shapes.items()}

    def rank_pattern(self) -> dict[str, dict[str, Any]]:
        """``{matrix: {rank, mask}}``: the kept triplets (AdaLoRA) or the full rank (LoRA)."""
        if self.allocator is not None:
            pattern = self.allocator.rank_pattern()
            return {name: {"rank": rank, "mask": pattern[name]} for name, rank in self.allocator.ranks().items()}
        return {name: {"rank": rank, "mask": [True] * rank} for name, (rank, _, _) in self.lora_shapes.items()}

    def adapter_parameters(self, initial: bool = False) -> int:
        if self.allocator is None:
            return sum(r * (out + inp + self.singular_values) for r, out, inp in self.lora_shapes.values())
        ranks = self.allocator.ranks()
        total = 0
        for name, (initial_rank, out_features, in_features) in self.allocator.layout.shapes.items():
            total += (initial_rank if initial else ranks[name]) * (out_features + in_features + 1)
        return total

    def budget(self, step: int) -> int:
        if self.allocator is None:
            return sum(self.ranks().values())
        return self.allocator.budget_schedule(step)[0]

    def allocator_state(self) -> dict[str, Any] | None:
        """The allocator's state and the rank pattern PEFT holds in its config (for checkpoints)."""
        if self.allocator is None:
            return None
        return {**self.allocator.state_dict(), "peft_rank_pattern": self.allocator.peft_config.rank_pattern}

    def load_allocator_state(self, state: dict[str, Any] | None) -> None:
        if self.allocator is None:
            return
        self.allocator.load_state_dict(state)
        self.allocator.peft_config.rank_pattern = state.get("peft_rank_pattern")

    def save(self, folder: Path, model: Any | None = None, state_dict: dict[str, Any] | None = None) -> None:
        """A standard PEFT adapter (``adapter_config.json`` with the rank pattern, and the weights) in ``folder``
        (:func:`~adalora_scores.adapter.peft.saving.save_adapter`: a matrix pruned to rank 0 is saved at rank 1 with
        λ = 0). ``model``: the same PEFT model unwrapped from a training wrapper, if it was wrapped. ``state_dict``:
        the full trainable state to save instead of the model's parameters (required when they are FSDP2 shards;
        the engine gathers it with :meth:`Backend.trainable_state`).

        Raises:
            RuntimeError: the adapter is FSDP2-sharded and no ``state_dict`` was given.
        """
        model = model if model is not None else self.model
        if state_dict is None:
            check_savable(model)
        save_adapter(model, folder, state_dict=state_dict)


_TASK_TYPES = (
    ("ForSequenceClassification", "SEQ_CLS"),
    ("ForQuestionAnswering", "QUESTION_ANS"),
    ("ForTokenClassification", "TOKEN_CLS"),
    ("ForCausalLM", "CAUSAL_LM"),
)


def peft_task_type(model) -> str | None:
    """PEFT's ``task_type`` for a transformers model class (``BertForSequenceClassification`` → ``SEQ_CLS``).

    It matters for AdaLoRA: only PEFT's task models (``PeftModelForSequenceClassification``, ...) call
    ``AdaLoraModel.forward``, which adds the orthogonal regulariser to the loss; a plain ``PeftModel`` calls the base
    model directly and trains without it.
    """
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    name = type(model).__name__
    if name in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():  # also GPT2LMHeadModel, Gemma3ForConditionalGeneration
        return "CAUSAL_LM"
    return next((task_type for suffix, task_type in _TASK_TYPES if name.endswith(suffix)), None)


def _common(model, spec: AdapterSpec) -> dict[str, Any]:
    return {
        "task_type": peft_task_type(model),
        "lora_alpha": spec.lora_alpha,
        "lora_dropout": spec.lora_dropout,
        "target_modules": resolve_target_modules(model.config.model_type, spec.target_modules),
        "fan_in_fan_out": needs_fan_in_fan_out(model),  # GPT-2's Conv1D keeps its weight as (in, out)
        "modules_to_save": list(spec.modules_to_save),
    }


def build_adalora(model, spec: AdapterSpec, backend: Backend | str | None = None) -> tuple[Any, PeftRankAllocator]:
    """Wrap ``model`` in PEFT AdaLoRA with the spec's schedule and attach its score (``backend``: see
    :func:`~adalora_scores.adapter.peft.attach.attach`)."""
    adalora_config = AdaLoraConfig(
        init_r=spec.init_r,
        target_r=spec.target_r,
        total_step=spec.total_steps,
        tinit=spec.budget_warmup,
        tfinal=spec.budget_final,
        deltaT=spec.mask_interval,
        beta1=spec.beta1,
        beta2=spec.beta2,
        orth_reg_weight=spec.orth_reg_weight,
        **_common(model, spec),
    )
    peft_model = get_peft_model(model, adalora_config)
    if is_four_bit(model):  # SVDLinear4bit around every Linear4bit, the head unquantized
        check_four_bit_layers(peft_model)
        guard_cpu_repacking(peft_model)
    options = dict(spec.score_options)
    if spec.seed is not None and get_score_class(spec.score).seeded_by_run:  # random controls: the run's seed
        options.setdefault("seed", spec.seed)
    allocator = attach(
        peft_model, score=spec.score, task_gradient_only=spec.task_gradient_only, backend=backend, **options
    )
    if allocator.per_example is not None:  # the loss of each micro-batch is divided by the accumulation count
        allocator.per_example.set_loss_divisor(spec.loss_divisor)
    return peft_model, allocator


def build_lora(model, spec: AdapterSpec):
    """Plain LoRA of rank ``spec.target_r`` on the same modules (the baseline rows)."""
    peft_model = get_peft_model(model, LoraConfig(r=spec.target_r, **_common(model, spec)))
    return peft_model, _baseline_shapes(peft_model, spec.target_r, "lora_A")


def build_svd_lora(model, spec: AdapterSpec, backend: Backend | None = None):
    """SVD-LoRA: PEFT AdaLoRA's P Λ Q and regulariser at rank ``spec.target_r`` on every matrix, never allocated
    (module docstring). PEFT's allocator is built but never called; its schedule values are unused."""
    svd_config = AdaLoraConfig(
        init_r=spec.target_r,
        target_r=spec.target_r,
        total_step=1,  # required by AdaLoraConfig; nothing is scheduled
        tinit=0,
        tfinal=0,
        orth_reg_weight=spec.orth_reg_weight,
        **_common(model, spec),
    )
    peft_model = get_peft_model(model, svd_config)
    resolve_backend(backend).prepare_adalora(adalora_model(peft_model))  # FSDP2: the regulariser from full tensors
    return peft_model, _baseline_shapes(peft_model, spec.target_r, "lora_E")


def _baseline_shapes(peft_model, rank: int, parameter: str) -> dict[str, tuple[int, int, int]]:
    """``{matrix name: (rank, out_features, in_features)}`` of a baseline without allocation, named by its
    ``parameter`` (``lora_A`` for LoRA, ``lora_E`` for SVD-LoRA, as AdaLoRA's rank patterns name matrices)."""
    if is_four_bit(peft_model):
        check_four_bit_layers(peft_model)
        guard_cpu_repacking(peft_model)
    shapes = {}
    for name, module in peft_model.named_modules():
        if hasattr(module, parameter) and "default" in getattr(module, parameter, {}):
            key = name.removeprefix("base_model.model.") + f".{parameter}.default"
            # PEFT's sizes, not the base weight's shape: a 4-bit weight is packed, a Conv1D one is (in, out)
            shapes[key] = (rank, module.out_features, module.in_features)
    return shapes


def build_adapted_model(model, spec: AdapterSpec, backend: Backend | None = None) -> AdaptedModel:
    """AdaLoRA (``spec.method == "adalora"``), SVD-LoRA or LoRA around ``model``, for the training engine (before
    accelerate's ``prepare``, which may shard it: ``backend``, None for accelerate's set-up, says how)."""
    backend = resolve_backend(backend)
    if spec.method == "lora":
        peft_model, shapes = build_lora(model, spec)
        return AdaptedModel(peft_model, None, shapes, backend=backend)
    if spec.method == "svd_lora":
        peft_model, shapes = build_svd_lora(model, spec, backend)
        return AdaptedModel(peft_model, None, shapes, singular_values=True, backend=backend)
    peft_model, allocator = build_adalora(model, spec, backend)
    return AdaptedModel(peft_model, allocator, {}, backend=backend)
