"""``adalora-scores export RUN``: a finished run's adapter as a standard PEFT LoRA adapter at the kept ranks, at one
uniform rank, or merged into the base model (``adapter/peft/export.py`` has the conversion and its formula)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

from adalora_scores.adapter.peft.export import WEIGHTS_FILE, kept_ranks, lora_export, merged_model, write_lora_export
from adalora_scores.engine.evaluate import load_run_model, open_run, run_tokenizer
from adalora_scores.module_types import module_type, ordered_types
from adalora_scores.run_files import ADAPTER_FOLDER

__all__ = ["EXPORT_FIELDS", "ExportSummary", "export_run", "uniform_rank_for"]

EXPORT_FIELDS = ("load_in_4bit", "torch_dtype")
"""The config values ``export`` may change: how the base model is loaded (``--merge`` into a full-precision copy)."""


@dataclass
class ExportSummary:
    """What ``export`` wrote, for the command's report."""

    output: Path
    kind: str
    """``lora`` (each module at its kept rank), ``lora-uniform`` or ``merged``."""
    bytes_written: int
    bytes_adalora: int
    ranks: dict[str, int] = field(default_factory=dict)
    """Every adapted module with its kept rank (0: left out of the LoRA adapter)."""
    uniform_rank: int | None = None

    def lines(self) -> list[str]:
        """The report: the size against the AdaLoRA adapter's, then the kept ranks per module type."""
        ratio = self.bytes_written / self.bytes_adalora if self.bytes_adalora else float("nan")
        what = "merged model" if self.kind == "merged" else f"LoRA adapter ({WEIGHTS_FILE})"
        lines = [f"{self.output}: {what} {_size(self.bytes_written)}, the AdaLoRA adapter "
                 f"{_size(self.bytes_adalora)} ({ratio:.0%})"]  # fmt: skip
        if self.uniform_rank is not None:
            lines.append(f"uniform rank {self.uniform_rank} (zero-padded; the update is unchanged)")
        by_type: dict[str, list[int]] = {}
        for name, rank in self.ranks.items():
            by_type.setdefault(module_type(name) or "other", []).append(rank)
        for kind in ordered_types(set(by_type)):
            values = by_type[kind]
            lines.append(f"  {kind:6s} kept rank {min(values)}-{max(values)}, mean {mean(values):.2f} over "
                         f"{len(values)} modules ({sum(v == 0 for v in values)} left out at rank 0)")  # fmt: skip
        return lines


def _size(count: int) -> str:
    return f"{count / 1024:,.1f} KiB" if count < 1024**2 else f"{count / 1024**2:,.1f} MiB"


def uniform_rank_for(largest: int, requested: int | str, choices: tuple[int, ...] = ()) -> int:
    """The uniform rank: ``requested`` as given (:func:`lora_export` refuses one below the largest kept rank), or for
    ``"auto"`` the largest kept rank, rounded up to the smallest of ``choices`` (e.g. vLLM's 8, 16, 32, 64) that
    holds it.

    Raises:
        ValueError: no choice holds the largest kept rank.
    """
    if requested != "auto":
        return int(requested)
    if not choices:
        return largest
    fitting = [choice for choice in sorted(choices) if choice >= largest]
    if not fitting:
        listed = ",".join(map(str, choices))
        raise ValueError(f"--rank-choices {listed}: none holds the largest kept rank ({largest}); add a larger rank.")
    return fitting[0]


def export_run(
    run: str | Path,
    output: str | Path,
    uniform_rank: int | str | None = None,
    rank_choices: tuple[int, ...] = (),
    merge: bool = False,
    overwrite: bool = False,
    overrides: list[str] | None = None,
) -> ExportSummary:
    """Write the finished run ``run``'s adapter to ``output`` as a PEFT LoRA adapter (exact ranks, or
    ``uniform_rank``: an int or ``"auto"``, see :func:`uniform_rank_for`), or with ``merge`` the base model with the
    update merged in (loadable by transformers' ``AutoModelFor…`` alone). The tokenizer comes along. ``output`` is
    written whole or not at all (a temporary folder renamed into place).

    Raises:
        FileExistsError: ``output`` holds files and ``overwrite`` is False.
        ValueError: a LoRA run without ``merge`` (its adapter is LoRA already), or a 4-bit base with ``merge``.
    """
    run, output = Path(run), Path(output)
    config, task = open_run(run, overrides or [], "export", EXPORT_FIELDS)
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise FileExistsError(f"{output} already exists; pass --overwrite to replace it, or another --output.")
    if config.method == "lora" and not merge:
        raise ValueError(f"{run} trained plain LoRA: {run / ADAPTER_FOLDER} is already a standard PEFT LoRA adapter. "
                         "Use it as it is, or pass --merge to merge it into the base model.")  # fmt: skip
    accelerator, prepared = load_run_model(run, config, task)
    model, tokenizer = accelerator.unwrap_model(prepared), run_tokenizer(run)
    staging = output.with_name(f".{output.name}.export-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        summary = _write(model, staging, uniform_rank, rank_choices, merge)
        tokenizer.save_pretrained(staging)
        if output.is_dir():
            shutil.rmtree(output)
        elif output.exists():
            output.unlink()
        staging.rename(output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    summary.output = output
    summary.bytes_adalora = (run / ADAPTER_FOLDER / WEIGHTS_FILE).stat().st_size
    return summary


def _write(model, folder: Path, uniform_rank, rank_choices: tuple[int, ...], merge: bool) -> ExportSummary:
    if merge:
        merged = merged_model(model)
        merged.save_pretrained(folder, safe_serialization=True)
        written = sum(path.stat().st_size for path in folder.glob("*.safetensors"))
        return ExportSummary(folder, "merged", written, 0)
    rank = None
    if uniform_rank is not None:
        rank = uniform_rank_for(max(kept_ranks(model).values(), default=0), uniform_rank, rank_choices)
    export = lora_export(model, uniform_rank=rank)
    weights = write_lora_export(export, folder)
    kind = "lora" if rank is None else "lora-uniform"
    return ExportSummary(folder, kind, weights.stat().st_size, 0, export.ranks, rank)
