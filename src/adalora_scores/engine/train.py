"""One explicit training path: an accelerate loop with the allocation step visible on its own line.

Why accelerate rather than ``transformers.Trainer``: the allocator must run after ``optimizer.step()`` and before
the gradients are zeroed, once per *optimizer* step, on the unscaled (and, with fp16, unscaled-by-the-GradScaler)
gradient. Writing the loop makes that order explicit and testable, while accelerate still gives DDP, gradient
accumulation and mixed precision unchanged. ``AllocationCallback`` remains available for Trainer users.
"""

from __future__ import annotations

import inspect
import math
import time
from pathlib import Path
from typing import Any

import torch
import transformers
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm
from transformers import AutoTokenizer, get_cosine_schedule_with_warmup, get_linear_schedule_with_warmup

import adalora_scores
from adalora_scores.adapter.build import build_adapted_model
from adalora_scores.adapter.quantization import four_bit_config, guard_cpu_repacking
from adalora_scores.adapter.sharding import check_full_gradients
from adalora_scores.config import TrainConfig, budget_steps
from adalora_scores.console import unless_quiet
from adalora_scores.engine.checkpoint import Progress, load_checkpoint
from adalora_scores.engine.data import make_loader
from adalora_scores.engine.evaluate import encode_splits, evaluate_splits, split_loaders
from adalora_scores.engine.full_state import full_trainable_state
from adalora_scores.engine.loop import Session, restore_state, run_steps
from adalora_scores.engine.model_files import check_model_folder
from adalora_scores.engine.run_folder import RunFolder
from adalora_scores.engine.split import hold_out
from adalora_scores.engine.tracking import check_tracker, start_tracking
from adalora_scores.plugins import restore_plugins, write_plugin_record
from adalora_scores.run_files import (
    ADAPTER_FOLDER,
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    RANK_PATTERN_FILE,
    config_changes,
    is_finished,
    read_config,
)
from adalora_scores.tasks import Task, configure_run

__all__ = ["load_model_and_tokenizer", "optimizer_steps", "predict", "train"]

_LABEL_KEYS = ("labels", "start_positions", "end_positions")
_TRANSFORMERS = tuple(int(part) for part in transformers.__version__.split(".")[:2])
_PAD_LOGIT = -1e4  # fills token positions past a feature's length; they are outside the context anyway


def _check_model_path(name: str) -> None:
    looks_local = name.startswith((".", "/", "~")) or Path(name).exists() or name.count("/") > 1
    if looks_local and not Path(name).expanduser().is_dir():
        raise FileNotFoundError(f"--model {name}: no such folder. Give a local model folder or a Hub name.")


def load_model_and_tokenizer(config: TrainConfig, task: Task):
    """Tokenizer and model with the task's head from a Hub name or local folder (DeBERTa-v3 needs sentencepiece),
    the model's weights in ``config.torch_dtype`` if set, its linear layers in 4 bits with ``config.load_in_4bit``
    (``adapter/quantization.py``; the head, ``modules_to_save``, stays unquantized)."""
    _check_model_path(config.model)
    check_model_folder(config.model)
    tokenizer = AutoTokenizer.from_pretrained(config.model)
    options: dict[str, Any] = {}
    if config.torch_dtype is not None:  # transformers < 4.56 calls the keyword torch_dtype
        options["dtype" if _TRANSFORMERS >= (4, 56) else "torch_dtype"] = getattr(torch, config.torch_dtype)
    if config.load_in_4bit:
        head = config.modules_to_save if config.modules_to_save is not None else task.modules_to_save
        options["quantization_config"] = four_bit_config(config.torch_dtype, head)
    model = task.load_model(config.model, **_accepted(task, options))
    if config.load_in_4bit:  # evaluation on AVX512-BF16 CPUs: any layer width, and training afterwards
        guard_cpu_repacking(model)
    if config.torch_dtype is not None:
        # loaded in this dtype; a module the model class keeps in float32 (``_keep_in_fp32_modules``) and a task
        # without model options are cast here, as before loading took ``dtype``. Parameters only: buffers such as
        # RoPE's float32 inv_freq keep their dtype, as with from_pretrained(dtype=...). PEFT keeps the adapter in
        # float32 (autocast_adapter_dtype); the task head (modules_to_save) trains in this dtype. 4-bit weights
        # (uint8) are not floating point: left alone.
        dtype = getattr(torch, config.torch_dtype)
        for parameter in model.parameters():
            if parameter.is_floating_point() and parameter.dtype != dtype:
                parameter.data = parameter.data.to(dtype)
    return model, tokenizer


def _accepted(task: Task, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` if the task's ``load_model`` takes them (``**model_options``, as the Task protocol says); a
    task written for ``load_model(name)`` loads at the checkpoint's dtype, then the cast applies ``torch_dtype``,
    as before. Such a task cannot load in 4 bits: a TypeError says how to fix it."""
    parameters = inspect.signature(task.load_model).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters) or not options:
        return options
    if "quantization_config" in options:
        raise TypeError(f"task {task.name}: load_model(name) takes no model options, so load_in_4bit cannot reach "
                        "from_pretrained. Give it **model_options and pass them on to from_pretrained (see "
                        "adalora_scores.tasks.Task.load_model), or set load_in_4bit=false.")  # fmt: skip
    return {}


def optimizer_steps(num_examples: int, config: TrainConfig, num_processes: int) -> int:
    """Total optimizer steps T, from the data size, epochs, batch size, accumulation and process count."""
    batches_per_epoch = math.ceil(num_examples / (config.batch_size * num_processes))
    return math.ceil(math.ceil(batches_per_epoch / config.gradient_accumulation_steps) * config.num_epochs)


@torch.no_grad()
def predict(
    model, loader, names: tuple[str, ...], accelerator: Accelerator, batch_outputs=None
) -> dict[str, torch.Tensor]:
    """The model outputs ``names`` for every item of ``loader``, in order, gathered from all processes (duplicates
    of the last uneven batch dropped). Token-level outputs are padded to a common length with a very low logit.
    ``batch_outputs(model, batch)``: the task's own outputs of a batch (labels included), instead of the model's
    outputs without labels."""
    model.eval()
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for batch in loader:
        if batch_outputs is not None:
            outputs = batch_outputs(model, batch)
        else:
            outputs = model(**{k: v for k, v in batch.items() if k not in _LABEL_KEYS})
        values = tuple(accelerator.pad_across_processes(outputs[n], dim=1, pad_index=_PAD_LOGIT) for n in names)
        for name, value in zip(names, accelerator.gather_for_metrics(values), strict=True):
            collected[name].append(value.float().cpu())
    model.train()
    result = {}
    for name, parts in collected.items():
        width = max(part.shape[1] for part in parts)
        padded = [torch.nn.functional.pad(p, (0, width - p.shape[1]), value=_PAD_LOGIT) for p in parts]
        result[name] = torch.cat(padded)
    return result


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
        raise ValueError(f"--resume with a changed config ({details}); resume with the original values, or start "
                         "a new run (another --output, or --overwrite).")  # fmt: skip


def _check_deepspeed_run(config: TrainConfig, resume: bool) -> None:
    """What the engine does not support under DeepSpeed (ZeRO-3), refused before any work: checkpoints and
    ``--resume`` (a checkpoint holds the optimizer's full state through torch's state-dict API, which does not
    read DeepSpeed's partitioned optimizer), and ``nonfinite=skip`` (accelerate's ``backward`` has already run
    ``engine.step()`` when the guard sees the loss, so the step cannot be skipped)."""
    fixes = []
    if resume:
        fixes.append("--resume: start the run again without it")
    if config.checkpoint_every != 0:
        fixes.append(f"checkpoints (checkpoint_every={config.checkpoint_every}): set checkpoint_every=0")
    if config.nonfinite == "skip":
        fixes.append("nonfinite=skip (DeepSpeed has stepped before the guard runs): set nonfinite=stop")
    if fixes:
        raise ValueError("under DeepSpeed the engine does not support " + "; ".join(fixes) + ".")


def train(config: TrainConfig, output: str | Path, overwrite: bool = False, resume: bool = False) -> dict[str, Any]:
    """Fine-tune ``config.model`` on ``config.task`` with AdaLoRA and ``config.score`` (or plain LoRA); write the
    run folder. ``resume`` continues from the folder's last checkpoint, exactly (same order, RNG and statistics).

    Returns the metrics written to ``metrics.json``.
    """
    checkpoint = None
    if resume:
        _check_resumable(Path(output), config)
        restore_plugins(output, config.score, config.task)  # the run's plugins (plugins.json), imported again
    task = configure_run(config)  # the task of this run, with its options, checked against the config
    adalora_scores.get_score_class(config.score)  # unknown score: fail before any work
    if resume:
        checkpoint = load_checkpoint(Path(output))
    tracker = check_tracker(config.report_to)  # a missing tracker package fails before any work
    data = task.load(config.data)
    AcceleratorState._reset_state()  # a process may train several runs (sweeps) with different mixed precision
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        cpu=not torch.cuda.is_available(),
        # T already counts processes and accumulation; accelerate would otherwise step the LR schedule once per
        # process at every optimizer step (n times too fast with n processes)
        step_scheduler_with_optimizer=False,
        log_with=tracker,
        project_dir=str(output),  # TensorBoard writes to <output>/tensorboard/
    )
    check_full_gradients(accelerator.distributed_type)  # DeepSpeed ZeRO 0-2/FSDP1: refused before any work
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        _check_deepspeed_run(config, resume)
    set_seed(config.seed)
    model, tokenizer = load_model_and_tokenizer(config, task)
    if config.gradient_checkpointing:
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns there
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    train_examples, selection = hold_out(data.train, config.selection_fraction, config.selection_seed, task.group_key)
    train_examples = train_examples[: config.max_train_samples]
    train_set = task.encode(train_examples, tokenizer, config, train=True)
    eval_sets = encode_splits(task, data.evals, selection, tokenizer, config)
    total_steps = optimizer_steps(len(train_set), config, accelerator.num_processes)
    adapted = build_adapted_model(model, config, total_steps, task.modules_to_save)
    allocator = adapted.allocator
    resolved = {**config.to_dict(), "total_steps": total_steps, "selection_examples": len(selection)}
    if allocator is not None:
        resolved["budget_steps"] = list(budget_steps(config, total_steps))  # (budget_warmup, budget_final) in steps
    start_step = None if checkpoint is None else checkpoint["progress"]["step"]
    RunFolder.validate(Path(output), overwrite, resume)  # every process, before any of them writes
    accelerator.wait_for_everyone()
    folder = RunFolder(output, overwrite=overwrite, resume_step=start_step, writer=accelerator.is_main_process)
    start_tracking(accelerator, config, "tensorboard")
    if folder.writer:
        write_plugin_record(folder.path)  # every plugin loaded in this process (a sweep's, the CLI's, entry points)
    if checkpoint is None:
        folder.write_config(resolved)
        if (header := adapted.allocation_header()) is not None:
            folder.log_allocation(header)

    optimizer = torch.optim.AdamW(
        [p for p in adapted.model.parameters() if p.requires_grad],
        lr=config.learning_rate,
        weight_decay=config.weight_decay,
    )
    warmup = config.lr_warmup_steps or int(config.lr_warmup_ratio * total_steps)
    schedule = {"linear": get_linear_schedule_with_warmup, "cosine": get_cosine_schedule_with_warmup}
    scheduler = schedule[config.lr_schedule](optimizer, warmup, total_steps)
    train_loader = make_loader(train_set, tokenizer, config.batch_size, shuffle=True, seed=config.seed,
                               group_by_length=config.group_by_length)  # fmt: skip
    peft_model, optimizer, train_loader, scheduler = accelerator.prepare(
        adapted.model, optimizer, train_loader, scheduler
    )
    eval_loaders = split_loaders(eval_sets, tokenizer, config, accelerator)
    session = Session(
        config, accelerator, peft_model, optimizer, scheduler, train_loader, adapted, folder, total_steps
    )
    progress = Progress() if checkpoint is None else restore_state(session, checkpoint)

    # ZeRO-3 partitions every parameter into an empty tensor; ds_numel is the full size
    trainable = sum(getattr(p, "ds_numel", p.numel()) for p in peft_model.parameters() if p.requires_grad)
    unless_quiet(accelerator.print)(  # one line per run unless --verbose: the closing line below
        f"{task.name}: {len(train_examples)} train examples ({len(train_set)} features), {total_steps} "
        f"optimizer steps, "
        + (
            f"score={config.score}, {len(allocator.layout.matrices)} adapted matrices, budget "
            f"{allocator.initial_budget} -> {allocator.target_budget}, "
            if allocator
            else f"{'SVD-LoRA' if config.method == 'svd_lora' else 'LoRA'} r={config.target_r}, "
        )
        + f"{trainable:,} trainable parameters"
        + (f"; resuming at step {progress.step}" if checkpoint is not None else "")
    )
    start = time.perf_counter()
    show = None if accelerator.is_local_main_process else True  # None: tqdm shows the bar only on a terminal
    bar = tqdm(total=total_steps, initial=progress.step, disable=show, desc=task.name, leave=False)
    progress = run_steps(session, progress, bar, rng_state=None if checkpoint is None else checkpoint["rng"])
    bar.close()
    wall = time.perf_counter() - start

    evals, files = evaluate_splits(task, peft_model, eval_sets, eval_loaders, tokenizer, accelerator, config)
    files |= task.run_files()  # e.g. classification's labels.json
    ranks = adapted.ranks()
    finite = [v for v in progress.losses if math.isfinite(v)]
    initial_parameters = adapted.adapter_parameters(initial=True)
    metrics = {
        "task": task.name,
        "score": config.score,
        "method": config.method,
        "seed": config.seed,
        "main_metric": task.main_metric,
        "eval": evals,
        "train_loss": sum(finite) / max(len(finite), 1),
        "final_train_loss": sum(finite[-10:]) / max(len(finite[-10:]), 1),
        "train_examples": len(train_examples),
        "train_features": len(train_set),
        "steps": progress.step,
        "total_steps": total_steps,
        "skipped_steps": progress.skipped_steps,
        "resumed_from_step": start_step,
        "wall_seconds": wall,
        "trainable_parameters": trainable,
        "adapter_parameters": adapted.adapter_parameters(),
        "adapter_parameters_initial": initial_parameters,
        "head_parameters": trainable - initial_parameters,
        "final_budget": sum(ranks.values()),
    }
    unwrapped = accelerator.unwrap_model(peft_model)
    adapter_state = full_trainable_state(unwrapped)  # every process (gathers FSDP2 shards); full on the main one
    if accelerator.is_main_process:
        try:
            for filename, content in files.items():
                folder.write_json(filename, content)
            folder.write_json(RANK_PATTERN_FILE, adapted.rank_pattern())
            adapted.save(folder.path / ADAPTER_FOLDER, unwrapped, state_dict=adapter_state)
            tokenizer.save_pretrained(folder.path / ADAPTER_FOLDER)
            folder.write_json(METRICS_FILE, metrics)  # last: the run is complete once this exists
        except OSError as error:
            raise OSError(
                f"could not write the results of {folder.path} ({error.strerror or error}); the run is not marked "
                "finished. Free space and re-run it (with --resume if it checkpointed)."
            ) from error
        (folder.path / CHECKPOINT_FILE).unlink(missing_ok=True)  # finished: the checkpoint is no longer needed
    folder.close()
    if config.report_to != "none":
        accelerator.end_training()
    accelerator.print(f"{task.name} done in {wall:.0f}s: " + ", ".join(f"{k} {v}" for k, v in evals.items()))
    return metrics
