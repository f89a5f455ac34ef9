"""Run configuration: one validated dataclass, YAML presets, and ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = ["TrainConfig", "load_preset", "parse_overrides", "resolve_config", "schedule_steps"]

PRESET_DIR = Path(__file__).parent / "presets"


@dataclass
class TrainConfig:
    """Everything one fine-tuning run needs. Paper symbols in brackets."""

    task: str = ""
    """GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli) or SQuAD (squad = v1.1, squad_v2)."""
    score: str = "sensitivity"
    """Registered importance score (``adalora-scores scores`` lists them)."""
    method: str = "adalora"
    """"adalora", or "lora": plain LoRA of rank ``target_r`` on the same modules (score and schedule unused)."""
    score_options: dict[str, Any] = field(default_factory=dict)
    """Constructor options of the score, e.g. ``{beta: 0.9}``."""
    model: str = "microsoft/deberta-v3-base"
    """Hub name or local folder of an encoder."""
    data: str | None = None
    """Local data folder; None loads the Hub dataset."""
    seed: int = 1
    num_epochs: float = 3.0
    batch_size: int = 32
    """Per-process batch size of one micro-batch."""
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    """Linear LR warm-up as a fraction of the optimizer steps, then linear decay to 0."""
    warmup_steps: int = 0
    """Linear LR warm-up in optimizer steps; when > 0 it replaces ``warmup_ratio``."""
    max_grad_norm: float = 1.0
    """Gradient clipping; scores see the clipped gradient, as in the original AdaLoRA trainer. 0 disables it."""
    max_seq_length: int | None = None
    """Longest input in tokens; None: 128 for GLUE, 384 for SQuAD (its windows)."""
    eval_batch_size: int = 64
    doc_stride: int = 128
    """SQuAD: overlap in tokens between consecutive windows of a long context."""
    max_answer_length: int = 30
    """SQuAD: longest answer span in tokens."""
    n_best_size: int = 20
    """SQuAD: start and end candidates per window (n_best² spans)."""
    null_score_diff_threshold: float = 0.0
    """SQuAD v2.0: answer "no answer" when null score − best span score exceeds this."""
    group_by_length: bool = False
    """Batch examples of similar length together (less padding)."""
    init_r: int = 16
    """Initial rank of every adapted matrix (b(0) = init_r × matrices)."""
    target_r: int = 8
    """Final average rank (b(T) = target_r × matrices)."""
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    orth_reg_weight: float = 0.1
    """γ of the orthogonality regulariser."""
    tinit: float = 0.1
    """Warm-up before pruning [t_i]: a fraction of the optimizer steps if < 1, else a step count."""
    tfinal: float = 0.2
    """Final phase with a frozen pattern [t_f]: a fraction of the optimizer steps if < 1, else a step count."""
    deltaT: int = 10
    """Optimizer steps between two allocations [ΔT]."""
    beta1: float = 0.85
    beta2: float = 0.85
    target_modules: str | list[str] | None = None
    """None uses the preset for the model type (q, k, v, o, f1, f2 of every layer)."""
    modules_to_save: list[str] | None = None
    """None trains the task head fully: classifier and pooler (GLUE), qa_outputs (SQuAD)."""
    selection_fraction: float = 0.0
    """Hold out this fraction of the training data as a "selection" split (evaluated like dev, never trained on),
    for choosing hyperparameters without touching dev. SQuAD holds out whole contexts."""
    selection_seed: int = 0
    """Seed of the held-out split: the same for every run seed, so all runs of a grid share one selection set."""
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    log_every: int = 10
    checkpoint_every: int | None = None
    """Write ``checkpoint.pt`` every this many optimizer steps, for ``--resume``; None: every 10% of the run
    (at least every step of a run shorter than 10 steps); 0: no checkpoints."""
    nonfinite: str = "stop"
    """A NaN/Inf loss or gradient: "stop" the run with a message naming the step and parameter, or "skip" the step
    with a warning (no optimizer, scheduler or allocator update). Under fp16 the GradScaler's own skips apply."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more time); scores are unchanged."""
    mixed_precision: str = "no"
    """"no", "fp16" or "bf16" (accelerate). Scores always see unscaled gradients."""

    def __post_init__(self) -> None:
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(message)

        need(bool(self.task), "task is required: pass --task NAME (e.g. --task mrpc).")
        if self.max_seq_length is None:
            self.max_seq_length = 384 if str(self.task).lower().startswith("squad") else 128
        need(self.num_epochs > 0, f"num_epochs must be > 0, got {self.num_epochs}.")
        positive = ("batch_size", "gradient_accumulation_steps", "eval_batch_size", "max_seq_length", "deltaT",
                    "max_answer_length", "n_best_size")  # fmt: skip
        for name in positive:
            need(int(getattr(self, name)) >= 1, f"{name} must be a positive integer, got {getattr(self, name)}.")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}.")
        need(0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1), got {self.warmup_ratio}.")
        need(self.method in ("adalora", "lora"), f"method must be 'adalora' or 'lora', got {self.method!r}.")
        need(
            0 <= self.selection_fraction < 1,
            f"selection_fraction must be in [0, 1) (e.g. 0.1 holds out 10% of train), got {self.selection_fraction}.",
        )
        need(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}.")
        need(
            not str(self.task).lower().startswith("squad") or 0 <= self.doc_stride < self.max_seq_length,
            f"doc_stride ({self.doc_stride}) must be in [0, max_seq_length={self.max_seq_length}); e.g. 128 with 384.",
        )
        need(self.init_r >= 1, f"init_r must be >= 1, got {self.init_r}.")
        need(
            0 <= self.target_r <= self.init_r,
            f"target_r ({self.target_r}) must be between 0 and init_r ({self.init_r}); the budget only shrinks.",
        )
        for name in ("tinit", "tfinal"):
            value = getattr(self, name)
            need(
                value >= 0 and (value < 1 or float(value).is_integer()),
                f"{name} must be a fraction of training in [0, 1) or a whole number of steps, got {value}.",
            )
        need(self.mixed_precision in ("no", "fp16", "bf16"), "mixed_precision must be 'no', 'fp16' or 'bf16'.")
        need(self.nonfinite in ("stop", "skip"), f"nonfinite must be 'stop' or 'skip', got {self.nonfinite!r}.")
        need(
            self.checkpoint_every is None or self.checkpoint_every >= 0,
            f"checkpoint_every must be >= 0 (0: none; null: every 10% of the run), got {self.checkpoint_every}.",
        )
        need(isinstance(self.score_options, dict), "score_options must be a mapping, e.g. {beta: 0.9}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def schedule_steps(config: TrainConfig, total_steps: int) -> tuple[int, int]:
    """(tinit, tfinal) in optimizer steps; fractions are of ``total_steps``. Raises if no budgeting phase is left."""

    def steps(value: float) -> int:
        return int(math.floor(value * total_steps)) if value < 1 else int(value)

    tinit, tfinal = steps(config.tinit), steps(config.tfinal)
    if tinit >= total_steps - tfinal:
        raise ValueError(
            f"no budgeting phase: tinit={tinit} and tfinal={tfinal} steps leave none of the {total_steps} optimizer "
            "steps for pruning. Give tinit/tfinal as fractions (e.g. tinit=0.1 tfinal=0.2) or train longer."
        )
    return tinit, tfinal


def load_preset(path_or_name: str, task: str | None) -> dict[str, Any]:
    """Values from a YAML preset: its ``defaults``, then its ``tasks[task]`` entry."""
    path = Path(path_or_name)
    if not path.is_file():
        named = PRESET_DIR / f"{path_or_name}.yaml"
        path = named if named.is_file() else PRESET_DIR / path.name
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))
        raise FileNotFoundError(f"no preset {path_or_name!r}; give a YAML path or one of: {available}.")
    document = yaml.safe_load(path.read_text()) or {}
    values = dict(document.get("defaults", {}))
    tasks = document.get("tasks", {})
    if task is not None and tasks:
        if task not in tasks:
            raise KeyError(f"preset {path} has no entry for task {task!r}; it covers {', '.join(tasks)}.")
        values.update(tasks[task] or {})
    return values


def _convert(name: str, text: str) -> Any:
    """Parse an override value with YAML, then check it fits the field's annotation."""
    hint = typing.get_type_hints(TrainConfig)[name]
    if text.strip().lower() in ("null", "none", "~") and type(None) in typing.get_args(hint):
        return None
    inner = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if type(None) in typing.get_args(hint) and len(inner) == 1:
        hint = inner[0]  # Optional[X]: check as X
    if hint is float:
        try:
            return float(text)  # YAML 1.1 reads "5e-3" as a string
        except ValueError:
            raise ValueError(f"{name}={text}: expected a number.") from None
    value = yaml.safe_load(text)
    if hint in (int, float) and isinstance(value, bool):
        raise ValueError(f"{name}={text}: expected a number.")
    if hint is float and isinstance(value, int):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint):
        if hint is str:
            return str(text)
        raise ValueError(f"{name}={text}: expected {hint.__name__}, got {type(value).__name__}.")
    return value


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["learning_rate=1e-3", "score_options.beta=0.9"]`` → typed values, checking every key exists."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair or pair.startswith("-"):
            raise ValueError(f"{pair!r} is not a key=value override (e.g. learning_rate=1e-3).")
        key, text = pair.split("=", 1)
        if key.startswith("score_options."):
            values.setdefault("score_options", {})[key.split(".", 1)[1]] = yaml.safe_load(text)
            continue
        if key not in fields:
            import difflib

            close = difflib.get_close_matches(key, fields, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown config key {key!r}.{hint}")
        values[key] = _convert(key, text)
    return values


def resolve_config(preset: str | None, task: str | None, cli: dict[str, Any], overrides: list[str]) -> TrainConfig:
    """Preset defaults < preset task entry < command-line flags < ``key=value`` overrides."""
    values: dict[str, Any] = load_preset(preset, task) if preset else {}
    values.update({k: v for k, v in cli.items() if v is not None})
    parsed = parse_overrides(overrides)
    if "score_options" in parsed:
        values["score_options"] = {**values.get("score_options", {}), **parsed.pop("score_options")}
    values.update(parsed)
    unknown = set(values) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise ValueError(f"unknown config key(s) {sorted(unknown)} in preset {preset}.")
    return TrainConfig(**values)
