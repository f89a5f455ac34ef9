"""The task contract the training loop, sweeps and reports use, and the task registry.

A task is a :class:`TaskBase`: it defines the abstract members and overrides the optional hooks it needs (each is
declared here with its default). A built-in task lives in ``tasks/<name>/task.py``, with its options beside it;
adding a task is one file that subclasses :class:`TaskBase` and calls :func:`register_task` once.

The engine gets the task of a run from :func:`configure_run` (or :func:`configure_task`) and calls every hook
directly.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from adalora_scores.plugins.registry import Registry

if TYPE_CHECKING:
    from adalora_scores.config import TrainConfig

__all__ = [
    "check_option_names",
    "task_option",
    "HOOKS",
    "LABEL_KEYS",
    "GenerationRequest",
    "Predictions",
    "TASKS",
    "TaskBase",
    "check_run_config",
    "configure_run",
    "configure_task",
    "get_task",
    "list_tasks",
    "register_task",
]

LABEL_KEYS = ("labels", "start_positions", "end_positions")
"""Batch keys that hold labels; :meth:`TaskBase.batch_outputs` leaves them out of the model's inputs."""
HOOKS = (
    "with_options",
    "check_config",
    "batch_outputs",
    "generation_request",
    "run_files",
    "for_prediction",
    "prediction_dataset",
    "prediction_records",
)
"""The optional hooks of :class:`TaskBase`, each with a default."""


@dataclass(frozen=True)
class GenerationRequest:
    """What the engine generates for an evaluation split: greedy continuations of ``prompts`` (token ids), each at
    most ``max_new_tokens`` long."""

    prompts: list[list[int]]
    max_new_tokens: int


@dataclass(frozen=True)
class Predictions:
    """What ``predict`` writes for an input file: ``records``, one per input row in input order (the rows of a
    ``.jsonl`` or ``.csv`` output, the array of a ``.json`` one), or ``document`` in a ``.json`` output where the task
    has a format of its own (SQuAD: ``{id: answer}``, the official predictions file)."""

    records: list[dict[str, Any]]
    document: Any = None


class TaskBase(ABC):
    """A task: its members (the methods are abstract), and every optional hook with its default.

    Subclasses define the members and override the hooks they need. In the order a run meets them:

    * :meth:`with_options`: the task of one run, bound to the config's ``task_options``;
    * :meth:`check_config`: refuses a config the task cannot run with, before any work;
    * :meth:`batch_outputs`: the outputs of one evaluation batch;
    * :meth:`generation_request`: what to generate from an evaluation split;
    * :meth:`run_files`: JSON files for the run folder, asked for after evaluation.

    ``predict`` (``engine/prediction.py``) uses :meth:`for_prediction`, :meth:`prediction_dataset`,
    :meth:`batch_outputs`, :meth:`generation_request` and :meth:`prediction_records`, in that order; a task without the
    last two cannot predict.

    Attributes:
        name: the registry name (lowercase, e.g. ``mrpc``).
        main_metric: the metric key that ranks runs (tuned mode picks on it).
        eval_splits: the evaluation splits ``load`` returns, e.g. ``("dev",)``.
        modules_to_save: the head trained fully next to the adapter.
        output_names: the model outputs that evaluation gathers (``logits``; SQuAD: start and end logits).
        group_key: an example attribute whose equal values stay on one side of the held-out selection split
            (SQuAD: ``context``), or None.
        default_max_seq_length: ``max_seq_length`` where the config leaves it None (SQuAD: 384, its windows).
    """

    name: str
    main_metric: str
    eval_splits: tuple[str, ...]
    modules_to_save: ClassVar[tuple[str, ...]]
    output_names: ClassVar[tuple[str, ...]]
    group_key: ClassVar[str | None]
    default_max_seq_length: ClassVar[int] = 128

    @abstractmethod
    def load(self, data: str | Path | None) -> Any:
        """Examples from the Hub (``data`` None) or a local folder, as an object with ``.train`` (a list) and
        ``.evals`` (split name → list), e.g. :class:`~adalora_scores.tasks.data.TaskData`."""

    @abstractmethod
    def load_model(self, name: str, **model_options: Any) -> torch.nn.Module:
        """The model ``name`` (Hub name or folder) with this task's head. ``model_options`` are extra
        ``from_pretrained`` keywords from the engine (``dtype`` with ``torch_dtype``, ``quantization_config`` with
        ``load_in_4bit``), to pass on unchanged."""

    @abstractmethod
    def encode(self, examples: list[Any], tokenizer: Any, config: Any, *, train: bool) -> Any:
        """A dataset of unpadded features with ``lengths`` (see ``engine/data.py``)."""

    @abstractmethod
    def evaluate(self, outputs: dict[str, torch.Tensor], dataset: Any, config: Any) -> tuple[dict[str, float], dict]:
        """``(metrics, files)`` from the gathered outputs; ``files`` are JSON objects written into the run folder."""

    @abstractmethod
    def expected_data(self) -> str:
        """The expected local data files, in words, for error messages."""

    # ----------------------------------------------------------------------------------------------------- hooks
    def with_options(self, options: Mapping[str, Any]) -> TaskBase:
        """The task of one run, bound to the config's ``task_options`` and validated (unknown names and missing
        required options are errors). Called once per run, by :func:`configure_task`, before any work.

        Default: a task without options; it refuses any option and returns itself.
        """
        if options:
            raise ValueError(
                f"task {self.name} takes no task_options (got {', '.join(map(str, options))}); remove "
                "them, or use --task classification for your own data."
            )
        return self

    def check_config(self, config: TrainConfig) -> None:
        """Raise a ``ValueError`` naming the fix when ``config`` has settings this task cannot run with. Called on the
        task :meth:`with_options` returned, by :func:`configure_run`: where the command line or a sweep resolves a
        config, and when ``train`` or ``evaluate`` starts, before any data is read.

        Default: every config is fine.
        """
        return None

    def batch_outputs(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> Any:
        """The outputs of one evaluation batch, a mapping that holds every name of ``output_names``. Called by the
        engine for every batch of every evaluation split, on the prepared model in eval mode, without gradients.

        Default: the model's outputs for the batch without its labels (:data:`LABEL_KEYS`).
        """
        return model(**{key: value for key, value in batch.items() if key not in LABEL_KEYS})

    def generation_request(self, dataset: Any) -> GenerationRequest | None:
        """What to generate greedily from the encoded evaluation split ``dataset``, or None for nothing. Called by
        the engine once per evaluation split, after :meth:`batch_outputs`; the generated texts reach
        :meth:`evaluate` as ``outputs["generations"]``, in the order of the request's prompts.

        Default: None.
        """
        return None

    def run_files(self) -> dict[str, Any]:
        """JSON objects (file name → content) the run folder keeps next to the adapter (``classification``:
        ``labels.json``). Called by ``train`` once, after evaluation, on the task of the run.

        Default: none.
        """
        return {}

    def for_prediction(self, run_folder: Path) -> TaskBase:
        """The task that predicts with the finished run in ``run_folder``: what training saved there restored
        (``classification``: the label mapping of ``labels.json``) and what prediction needs switched on
        (``causal_lm``: generation). Called by ``predict`` once, on the task of the run, before any input is read;
        no training data is read.

        Default: the task itself.
        """
        return self

    def prediction_dataset(self, path: Path, tokenizer: Any, config: TrainConfig) -> Any:
        """The input file ``path`` (labels, answers or completions optional), checked and encoded as for evaluation
        (a dataset with ``lengths``, see ``engine/data.py``). Called by ``predict`` once, before the model loads, so
        that a bad input stops it early; errors name the file, the line and the fix, as for training data.

        Default: the task cannot predict (``NotImplementedError``).
        """
        raise NotImplementedError(
            f"task {self.name} does not support predict: it has no prediction_dataset and "
            "prediction_records (adalora_scores.tasks.TaskBase); `adalora-scores evaluate RUN` "
            "evaluates it on its splits."
        )

    def prediction_records(self, outputs: dict[str, Any], dataset: Any) -> Predictions:
        """The predictions for the dataset of :meth:`prediction_dataset`, from the gathered ``outputs`` of its batches
        (:meth:`batch_outputs`; ``outputs["generations"]`` where :meth:`generation_request` asked for them). Called by
        ``predict`` once, after the model ran.

        Default: the task cannot predict (``NotImplementedError``).
        """
        raise NotImplementedError(f"task {self.name} does not support predict: it has no prediction_records.")


def check_option_names(options: Any, known: list[str], task: str, example: str) -> None:
    """Refuse ``task_options`` that are not a mapping (``example`` shows one), or that name an option the task does
    not have (the message suggests the closest known name and lists them all).

    Raises:
        ValueError: as above.
    """
    if not isinstance(options, Mapping):
        raise ValueError(f"task_options must be a mapping (e.g. {{{example}}}), got {options!r}.")
    for name in options:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"unknown task option {name!r} for task {task}.{hint} Known options: {', '.join(known)}.")


def task_option(default: Any, help: str) -> Any:
    """A task option's dataclass field: its ``default`` and the ``help`` text (``metadata["help"]``) that the option
    listings show."""
    return field(default=default, metadata={"help": help})


def _key(name: str) -> str:
    return str(name).lower().replace("-", "").replace("_", "")


TASKS: Registry[TaskBase] = Registry("task", key=_key, known="Known tasks")
"""The registered tasks by name; a name is found case-insensitively and without ``-`` and ``_`` ("sst-2" = "sst2",
"squad-v2" = "squad_v2")."""


def register_task(task: TaskBase) -> TaskBase:
    """Add ``task`` to the registry under ``task.name``; returns it.

    Raises:
        ValueError: a task of that name (or one that differs only in case, ``-`` and ``_``) is registered.
        TypeError: ``task`` is not a :class:`TaskBase`.
    """
    if not isinstance(task, TaskBase):
        raise TypeError(
            f"{task!r} is not a task: subclass adalora_scores.tasks.TaskBase, define its abstract members (load, "
            "load_model, encode, evaluate, expected_data), and register an instance."
        )
    return TASKS.register(task.name, task)


def list_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    return TASKS.names()


def get_task(name: str) -> TaskBase:
    """The task called ``name`` (see :data:`TASKS`); an unknown name lists the known ones."""
    return TASKS.get(name)


def configure_task(name: str, options: Mapping[str, Any] | None = None) -> TaskBase:
    """The task ``name`` for one run with its ``task_options``: ``task.with_options(options)``, a task without
    options refusing any."""
    return get_task(name).with_options(dict(options or {}))


def configure_run(config: TrainConfig) -> TaskBase:
    """The task of the run ``config`` describes: :func:`configure_task` with its ``task_options``, then
    :meth:`TaskBase.check_config`. ``train`` and ``evaluate`` call it before any work.

    Raises:
        KeyError: the task is not registered (the message lists the known tasks).
        ValueError: a task option, or a setting of the config, that the task refuses (the message names the fix).
    """
    task = configure_task(config.task, config.task_options)
    task.check_config(config)
    return task


def check_run_config(config: TrainConfig) -> None:
    """:func:`configure_run` where the command line or a sweep resolves a config, so that a bad task option fails
    before any run starts. A task that is not registered yet is left to ``train``: ``train --resume`` first imports
    the run's plugins, and its error lists the known tasks."""
    try:
        get_task(config.task)
    except KeyError:
        return
    configure_run(config)
