"""Evaluation: the end of every training run, and ``adalora-scores evaluate RUN`` for a finished run folder.

``evaluate_splits`` is the one evaluation path: the task's outputs for every batch (``predict``), greedy
generations where the task asks for them (``causal_lm`` with ``task_options.generate``), then ``task.evaluate``.
``evaluate_run`` reloads a run's adapter onto its base model with stock PEFT and evaluates it again, optionally with
other evaluation settings (e.g. ``task_options.generate=true``), into a folder of its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator

from adalora_scores.config import TrainConfig
from adalora_scores.engine.console import progress_bar
from adalora_scores.engine.finished_run import load_run_model, open_run, run_tokenizer
from adalora_scores.engine.generate import generate_texts
from adalora_scores.presets.overrides import parse_overrides
from adalora_scores.runs.files import METRICS_FILE

__all__ = [
    "dataset_outputs",
    "encode_splits",
    "evaluate_run",
    "evaluate_splits",
    "predict",
    "split_loaders",
]

_LABEL_KEYS = ("labels", "start_positions", "end_positions")
_PAD_LOGIT = -1e4  # fills token positions past a feature's length; they are outside the context anyway


@torch.no_grad()
def predict(
    model, loader, names: tuple[str, ...], accelerator: Accelerator, batch_outputs=None, progress: str | None = None
) -> dict[str, torch.Tensor]:
    """The model outputs ``names`` for every item of ``loader``, in order, gathered from all processes (duplicates
    of the last uneven batch dropped). Token-level outputs are padded to a common length with a very low logit.
    ``batch_outputs(model, batch)``: the task's own outputs of a batch (labels included), instead of the model's
    outputs without labels. ``progress``: the name of a progress bar over the batches (none without)."""
    model.eval()
    collected: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for batch in progress_bar(loader, progress, accelerator.is_local_main_process):
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


def encode_splits(
    task: Any, evals: dict[str, list[Any]], selection: list[Any], tokenizer: Any, config: TrainConfig
) -> dict[str, Any]:
    """The run's evaluation splits, encoded: the task's ``evals`` (dev) and the held-out ``selection`` split when
    there is one, each cut to ``max_eval_samples``."""
    splits = {**evals, **({"selection": selection} if selection else {})}
    return {
        name: task.encode(examples[: config.max_eval_samples], tokenizer, config, train=False)
        for name, examples in splits.items()
    }


def split_loaders(
    eval_sets: dict[str, Any], tokenizer: Any, config: TrainConfig, accelerator: Accelerator
) -> dict[str, Any]:
    """One prepared, unshuffled loader of ``eval_batch_size`` per encoded split."""
    from adalora_scores.engine.data import make_loader

    loaders = {}
    for name, dataset in eval_sets.items():
        loader = make_loader(dataset, tokenizer, config.eval_batch_size, shuffle=False, seed=config.seed)
        loaders[name] = accelerator.prepare(loader)
    return loaders


def dataset_outputs(
    task: Any,
    model: Any,
    dataset: Any,
    loader: Any,
    tokenizer: Any,
    accelerator: Accelerator,
    config: TrainConfig,
    progress: str | None = None,
) -> dict[str, Any]:
    """The task's outputs for every batch of ``loader`` (``predict`` with ``task.batch_outputs``), and
    ``generations``, greedy continuations, where ``task.generation_request(dataset)`` asks for them."""
    outputs: dict[str, Any] = predict(model, loader, task.output_names, accelerator, task.batch_outputs, progress)
    request = task.generation_request(dataset)
    if request is not None:
        unwrapped = accelerator.unwrap_model(model)
        settings = (config.eval_batch_size, request.max_new_tokens, progress and f"{progress}: generate")
        outputs["generations"] = generate_texts(unwrapped, request.prompts, tokenizer, accelerator, *settings)
    return outputs


def evaluate_splits(
    task: Any,
    model: Any,
    eval_sets: dict[str, Any],
    eval_loaders: dict[str, Any],
    tokenizer: Any,
    accelerator: Accelerator,
    config: TrainConfig,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics per split, run-folder files)``: each file is named as the task names it when there is one split,
    else prefixed with the split (``selection_predictions.jsonl``)."""
    evals, files = {}, {}
    for name, loader in eval_loaders.items():
        outputs = dataset_outputs(task, model, eval_sets[name], loader, tokenizer, accelerator, config)
        evals[name], written = task.evaluate(outputs, eval_sets[name], config)
        files |= {(f if len(eval_loaders) == 1 else f"{name}_{f}"): content for f, content in written.items()}
    return evals, files


def evaluate_run(
    run: str | Path, output: str | Path | None = None, overrides: list[str] | None = None, overwrite: bool = False
) -> dict[str, Any]:
    """Evaluate the finished run ``run`` again; write ``metrics.json`` and the task's files into ``output`` (default
    ``RUN/evaluation``). Returns the metrics.

    The base model is the run's ``model`` with the task's head, the adapter ``RUN/adapter`` loaded by stock PEFT,
    the tokenizer the one saved with the adapter (:func:`load_run_model`); the splits are the run's (dev, and the
    selection split when it held one out).
    """
    from adalora_scores.engine.split import hold_out
    from adalora_scores.runs.files import write_json

    run = Path(run)
    folder = Path(output) if output is not None else run / "evaluation"
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} already holds files; pass --overwrite to replace them, or another --output.")
    config, task = open_run(run, overrides or [], "evaluate")
    data = task.load(config.data)
    accelerator, model = load_run_model(run, config, task)
    tokenizer = run_tokenizer(run)
    _, selection = hold_out(data.train, config.selection_fraction, config.selection_seed, task.group_key)
    eval_sets = encode_splits(task, data.evals, selection, tokenizer, config)
    loaders = split_loaders(eval_sets, tokenizer, config, accelerator)
    results, files = evaluate_splits(task, model, eval_sets, loaders, tokenizer, accelerator, config)
    identity = {"run": str(run), "task": task.name, "score": config.score, "method": config.method}
    changed = {name: getattr(config, name) for name in parse_overrides(overrides or [])}
    metrics = {**identity, "seed": config.seed, "main_metric": task.main_metric, "eval": results, "changed": changed}
    if accelerator.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        for name, content in files.items():
            write_json(folder / name, content)
        write_json(folder / METRICS_FILE, metrics)
    accelerator.print(f"{task.name} evaluated: " + ", ".join(f"{k} {v}" for k, v in results.items()))
    return metrics
