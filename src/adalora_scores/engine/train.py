"""One explicit training path: an accelerate loop with the allocation step visible on its own line.

Why accelerate rather than ``transformers.Trainer``: the allocator must run after ``optimizer.step()`` and before
the gradients are zeroed, once per *optimizer* step, on the unscaled (and, with fp16, unscaled-by-the-GradScaler)
gradient. Writing the loop makes that order explicit and testable, while accelerate still gives DDP, gradient
accumulation and mixed precision unchanged. ``AllocationCallback`` remains available for Trainer users.

:func:`train` reads as prepare → train the steps → finish: :func:`prepare` does every check before any work, then
builds the model, data, run folder and optimizer; :func:`train_steps` runs the loop (:mod:`.loop`); :func:`finish`
evaluates and writes the results, ``metrics.json`` last.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import set_seed
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

from adalora_scores.adapter.distributed import choose_backend
from adalora_scores.adapter.peft.build import AdaptedModel, build_adapted_model
from adalora_scores.config import TrainConfig, budget_steps
from adalora_scores.engine.adapter import adapter_spec, check_engine_run
from adalora_scores.engine.checkpoint import Progress, load_checkpoint
from adalora_scores.engine.console import unless_quiet
from adalora_scores.engine.data import make_loader
from adalora_scores.engine.evaluate import encode_splits, evaluate_splits, split_loaders
from adalora_scores.engine.loop import Session, restore_state, run_steps
from adalora_scores.engine.model import enable_gradient_checkpointing, load_model_and_tokenizer
from adalora_scores.engine.split import hold_out
from adalora_scores.engine.tracking import check_tracker, start_tracking
from adalora_scores.runs.files import (
    ADAPTER_FOLDER,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RANK_PATTERN_FILE,
    config_changes,
    is_finished,
    read_config,
)
from adalora_scores.runs.plugin_record import restore_plugins, write_plugin_record
from adalora_scores.runs.writer import RunFolder
from adalora_scores.scores import get_score_class
from adalora_scores.tasks import TaskBase, configure_run

__all__ = ["Prepared", "finish", "optimizer_steps", "prepare", "train", "train_steps"]


def train(config: TrainConfig, output: str | Path, overwrite: bool = False, resume: bool = False) -> dict[str, Any]:
    """Fine-tune ``config.model`` on ``config.task`` with AdaLoRA and ``config.score`` (or a baseline); write the
    run folder. ``resume`` continues from the folder's last checkpoint, exactly (same order, RNG and statistics).

    Returns the metrics written to ``metrics.json``.
    """
    prepared = prepare(config, Path(output), overwrite, resume)
    progress, wall_seconds = train_steps(prepared)
    return finish(prepared, progress, wall_seconds)


@dataclass
class Prepared:
    """Everything a run needs once :func:`prepare` is done."""

    config: TrainConfig
    task: TaskBase
    session: Session
    progress: Progress
    tokenizer: Any
    eval_sets: dict[str, Any]
    eval_loaders: dict[str, Any]
    train_examples: int
    train_features: int
    resumed_from_step: int | None
    rng_state: dict[str, Any] | None


def prepare(config: TrainConfig, output: Path, overwrite: bool, resume: bool) -> Prepared:
    """Check everything that can fail before any work, then build the model, the data, the run folder and the
    optimizer; with ``resume``, restore the folder's checkpoint."""
    task, checkpoint, tracker = _check_before_work(config, output, resume)
    data = task.load(config.data)
    accelerator = _accelerator(config, output, tracker)
    backend = choose_backend(accelerator.distributed_type)  # FSDP1 and ZeRO stages 0 - 2 refused before any work
    check_engine_run(backend, resume, config.checkpoint_every, config.nonfinite)
    set_seed(config.seed)
    model, tokenizer = load_model_and_tokenizer(config, task)
    if config.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    train_examples, selection = hold_out(data.train, config.selection_fraction, config.selection_seed, task.group_key)
    train_examples = train_examples[: config.max_train_samples]
    train_set = task.encode(train_examples, tokenizer, config, train=True)
    eval_sets = encode_splits(task, data.evals, selection, tokenizer, config)
    total_steps = optimizer_steps(len(train_set), config, accelerator.num_processes)
    adapted = build_adapted_model(model, adapter_spec(config, total_steps, task.modules_to_save), backend)
    start_step = None if checkpoint is None else checkpoint["progress"]["step"]
    folder = _open_run_folder(config, output, overwrite, start_step, accelerator, adapted, total_steps, len(selection))
    session = _session(config, accelerator, adapted, folder, train_set, tokenizer, total_steps)
    progress = Progress() if checkpoint is None else restore_state(session, checkpoint)
    loaders = split_loaders(eval_sets, tokenizer, config, accelerator)
    rng = None if checkpoint is None else checkpoint["rng"]
    sizes = (len(train_examples), len(train_set))
    return Prepared(config, task, session, progress, tokenizer, eval_sets, loaders, *sizes, start_step, rng)


def train_steps(prepared: Prepared) -> tuple[Progress, float]:
    """Print the run's banner and train to the last optimizer step; returns the progress and the wall time."""
    session = prepared.session
    accelerator = session.accelerator
    unless_quiet(accelerator.print)(_banner(prepared))  # one line per run unless --verbose
    start = time.perf_counter()
    show = None if accelerator.is_local_main_process else True  # None: tqdm shows the bar only on a terminal
    name = prepared.task.name
    bar = tqdm(total=session.total_steps, initial=prepared.progress.step, disable=show, desc=name, leave=False)
    progress = run_steps(session, prepared.progress, bar, rng_state=prepared.rng_state)
    bar.close()
    return progress, time.perf_counter() - start


def finish(prepared: Prepared, progress: Progress, wall_seconds: float) -> dict[str, Any]:
    """Evaluate the trained model on every split, write the results (``metrics.json`` last: the run is complete once
    it exists), and return the metrics."""
    session, task, config = prepared.session, prepared.task, prepared.config
    accelerator = session.accelerator
    evals, files = evaluate_splits(
        task, session.model, prepared.eval_sets, prepared.eval_loaders, prepared.tokenizer, accelerator, config
    )
    files |= task.run_files()  # e.g. classification's labels.json
    metrics = _metrics(prepared, progress, wall_seconds, evals)
    _write_results(prepared, metrics, files)
    session.folder.close()
    if config.report_to != "none":
        accelerator.end_training()
    accelerator.print(f"{task.name} done in {wall_seconds:.0f}s: " + ", ".join(f"{k} {v}" for k, v in evals.items()))
    return metrics


def optimizer_steps(num_examples: int, config: TrainConfig, num_processes: int) -> int:
    """Total optimizer steps T, from the data size, epochs, batch size, accumulation and process count."""
    batches_per_epoch = math.ceil(num_examples / (config.batch_size * num_processes))
    return math.ceil(math.ceil(batches_per_epoch / config.gradient_accumulation_steps) * config.num_epochs)


# -- prepare ---------------------------------------------------------------------------------------------------------
def _check_before_work(config: TrainConfig, output: Path, resume: bool) -> tuple[TaskBase, dict[str, Any] | None, Any]:
    """``(task, checkpoint or None, tracker)``: a resumable folder, the run's plugins, the task and its options, the
    score and the tracker package, checked before any work."""
    checkpoint = None
    if resume:
        _check_resumable(output, config)
        restore_plugins(output, config.score, config.task)  # the run's plugins (plugins.json), imported again
    task = configure_run(config)  # the task of this run, with its options, checked against the config
    get_score_class(config.score)  # unknown score: fail before any work
    if resume:
        checkpoint = load_checkpoint(output)
    tracker = check_tracker(config.report_to)  # a missing tracker package fails before any work
    return task, checkpoint, tracker


def _check_resumable(folder: Path, config: TrainConfig) -> None:
    """A run folder may be resumed only with the config it was started with, and only if it is unfinished."""
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"--resume: {folder} holds no run (no {CONFIG_FILE}); start it without --resume.")
    if is_finished(folder):
        raise FileExistsError(f"--resume: {folder} already finished ({METRICS_FILE} exists); nothing to resume.")
    try:
        saved = read_config(folder)
    except ValueError as error:
        raise ValueError(f"--resume: {error}") from None
    changed = config_changes(saved, config)
    if changed:
        details = ", ".join(f"{name}: {before!r} -> {after!r}" for name, before, after in changed[:5])
        raise ValueError(
            f"--resume with a changed config ({details}); resume with the original values, or start "
            "a new run (another --output, or --overwrite)."
        )


def _accelerator(config: TrainConfig, output: Path, tracker: Any) -> Accelerator:
    AcceleratorState._reset_state()  # a process may train several runs (sweeps) with different mixed precision
    return Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        cpu=not torch.cuda.is_available(),
        # T already counts processes and accumulation; accelerate would otherwise step the LR schedule once per
        # process at every optimizer step (n times too fast with n processes)
        step_scheduler_with_optimizer=False,
        log_with=tracker,
        project_dir=str(output),  # TensorBoard writes to <output>/tensorboard/
    )


def _open_run_folder(
    config: TrainConfig,
    output: Path,
    overwrite: bool,
    start_step: int | None,
    accelerator: Accelerator,
    adapted: AdaptedModel,
    total_steps: int,
    selection_examples: int,
) -> RunFolder:
    """The run folder, checked by every process before any of them writes; a new run's resolved config and
    allocation header are written."""
    RunFolder.validate(output, overwrite, start_step is not None)
    accelerator.wait_for_everyone()
    folder = RunFolder(output, overwrite=overwrite, resume_step=start_step, writer=accelerator.is_main_process)
    start_tracking(accelerator, config, "tensorboard")
    if folder.writer:
        write_plugin_record(folder.path)  # every plugin loaded in this process (a sweep's, the CLI's, entry points)
    if start_step is None:
        resolved = {**config.to_dict(), "total_steps": total_steps, "selection_examples": selection_examples}
        if adapted.allocator is not None:  # (budget_warmup, budget_final) in steps
            resolved["budget_steps"] = list(budget_steps(config, total_steps))
        folder.write_config(resolved)
        if (header := adapted.allocation_header()) is not None:
            folder.log_allocation(header)
    return folder


def _session(
    config: TrainConfig,
    accelerator: Accelerator,
    adapted: AdaptedModel,
    folder: RunFolder,
    train_set: Any,
    tokenizer: Any,
    total_steps: int,
) -> Session:
    """AdamW, the learning-rate schedule and the shuffled train loader, prepared by accelerate with the model."""
    trainable = [p for p in adapted.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = config.lr_warmup_steps or int(config.lr_warmup_ratio * total_steps)
    schedule = {"linear": get_linear_schedule_with_warmup, "cosine": get_cosine_schedule_with_warmup}
    scheduler = schedule[config.lr_schedule](optimizer, warmup, total_steps)
    train_loader = make_loader(
        train_set, tokenizer, config.batch_size, shuffle=True, seed=config.seed, group_by_length=config.group_by_length
    )
    model, optimizer, train_loader, scheduler = accelerator.prepare(adapted.model, optimizer, train_loader, scheduler)
    return Session(config, accelerator, model, optimizer, scheduler, train_loader, adapted, folder, total_steps)


# -- train_steps and finish ------------------------------------------------------------------------------------------
def _trainable_parameters(session: Session) -> int:
    backend = session.adapted.backend  # a partitioned parameter's numel is not its full size
    return sum(backend.numel(p) for p in session.model.parameters() if p.requires_grad)


def _banner(prepared: Prepared) -> str:
    config, session = prepared.config, prepared.session
    allocator = session.adapted.allocator
    if allocator is not None:
        method = (
            f"score={config.score}, {len(allocator.layout.matrices)} adapted matrices, budget "
            f"{allocator.initial_budget} -> {allocator.target_budget}, "
        )
    else:
        method = f"{'SVD-LoRA' if config.method == 'svd_lora' else 'LoRA'} r={config.target_r}, "
    resuming = f"; resuming at step {prepared.progress.step}" if prepared.resumed_from_step is not None else ""
    return (
        f"{prepared.task.name}: {prepared.train_examples} train examples ({prepared.train_features} features), "
        f"{session.total_steps} optimizer steps, {method}{_trainable_parameters(session):,} trainable "
        f"parameters{resuming}"
    )


def _metrics(prepared: Prepared, progress: Progress, wall_seconds: float, evals: dict[str, Any]) -> dict[str, Any]:
    config, adapted = prepared.config, prepared.session.adapted
    finite = [v for v in progress.losses if math.isfinite(v)]
    trainable = _trainable_parameters(prepared.session)
    initial_parameters = adapted.adapter_parameters(initial=True)
    return {
        "task": prepared.task.name,
        "score": config.score,
        "method": config.method,
        "seed": config.seed,
        "main_metric": prepared.task.main_metric,
        "eval": evals,
        "train_loss": sum(finite) / max(len(finite), 1),
        "final_train_loss": sum(finite[-10:]) / max(len(finite[-10:]), 1),
        "train_examples": prepared.train_examples,
        "train_features": prepared.train_features,
        "steps": progress.step,
        "total_steps": prepared.session.total_steps,
        "skipped_steps": progress.skipped_steps,
        "resumed_from_step": prepared.resumed_from_step,
        "wall_seconds": wall_seconds,
        "trainable_parameters": trainable,
        "adapter_parameters": adapted.adapter_parameters(),
        "adapter_parameters_initial": initial_parameters,
        "head_parameters": trainable - initial_parameters,
        "final_budget": sum(adapted.ranks().values()),
    }


def _write_results(prepared: Prepared, metrics: dict[str, Any], files: dict[str, Any]) -> None:
    """The task's files, the rank pattern, the adapter and tokenizer, then ``metrics.json``; the checkpoint goes."""
    session = prepared.session
    adapted, folder = session.adapted, session.folder
    unwrapped = session.accelerator.unwrap_model(session.model)
    adapter_state = adapted.backend.trainable_state(unwrapped)  # every process (a collective when sharded)
    if not session.accelerator.is_main_process:
        return
    try:
        for filename, content in files.items():
            folder.write_json(filename, content)
        folder.write_json(RANK_PATTERN_FILE, adapted.rank_pattern())
        adapted.save(folder.path / ADAPTER_FOLDER, unwrapped, state_dict=adapter_state)
        prepared.tokenizer.save_pretrained(folder.path / ADAPTER_FOLDER)
        folder.write_json(METRICS_FILE, metrics)  # last: the run is complete once this exists
    except OSError as error:
        raise OSError(
            f"could not write the results of {folder.path} ({error.strerror or error}); the run is not marked "
            "finished. Free space and re-run it (with --resume if it checkpointed)."
        ) from error
    (folder.path / CHECKPOINT_FILE).unlink(missing_ok=True)  # finished: the checkpoint is no longer needed
