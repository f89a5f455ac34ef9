"""``adalora-scores export RUN``: a finished run's adapter as a standard PEFT LoRA adapter at the kept ranks, at one
uniform rank, or merged into the base model (``adapter/peft/export.py`` has the conversion and its formula), with
what each server needs to read it exactly (:func:`serving`), printed and written to ``export.json``.

How each server scales a LoRA module and where it reads the rank (sources in ``docs/export.md``):

* PEFT: α'/r' per module, from ``alpha_pattern`` / ``rank_pattern`` (keys matched as suffixes), else ``lora_alpha`` /
  ``r``.
* vLLM: one ``lora_alpha / r`` for every module (``vllm/lora/peft_helper.py``); each module's rank is its tensors'
  shape, and ``--max-lora-rank`` must hold the config's ``r`` (checked) and every tensor's rank (its buffers have that
  width). It refuses ``modules_to_save`` and an adapter bias.
* llama.cpp: ``convert_lora_to_gguf.py`` writes ``lora_alpha`` alone; each tensor pair is scaled by ``lora_alpha /
  rank of that tensor`` (``src/llama-adapter.h``). The converter stops at any tensor other than ``lora_A`` /
  ``lora_B`` (a trained head).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean

from adalora_scores.adapter.peft.export import WEIGHTS_FILE, kept_ranks, lora_export, merged_model, write_lora_export
from adalora_scores.engine.finished_run import load_run_model, open_run, run_tokenizer
from adalora_scores.engine.module_types import module_type, ordered_types
from adalora_scores.runs.files import ADAPTER_FOLDER

__all__ = [
    "EXPORT_FIELDS",
    "EXPORT_RECORD",
    "VLLM_MAX_LORA_RANKS",
    "ExportSummary",
    "Serving",
    "export_run",
    "serving",
    "uniform_rank_for",
    "vllm_max_lora_rank",
]

EXPORT_FIELDS = ("load_in_4bit", "torch_dtype")
"""The config values ``export`` may change: how the base model is loaded (``--merge`` into a full-precision copy)."""
EXPORT_RECORD = "export.json"
"""What ``export`` wrote and how each server reads it, in the exported folder (servers ignore the file)."""
VLLM_MAX_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The values vLLM's ``--max-lora-rank`` accepts (``MaxLoRARanks`` in ``vllm/config/lora.py``; older releases took
8, 16, 32, 64 only)."""


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
    servers: list[Serving] = field(default_factory=list)
    """How PEFT, vLLM and llama.cpp read the written folder (:func:`serving`)."""
    scales_folded: bool = False
    """Each module's scale folded into its ``lora_B`` (``--llama-cpp``)."""

    def lines(self) -> list[str]:
        """The report: the size against the AdaLoRA adapter's, the kept ranks per module type, then each server: how
        to load the folder exactly, or a warning that it would misread it and what to export instead."""
        ratio = self.bytes_written / self.bytes_adalora if self.bytes_adalora else float("nan")
        what = "merged model" if self.kind == "merged" else f"LoRA adapter ({WEIGHTS_FILE})"
        lines = [
            f"{self.output}: {what} {_size(self.bytes_written)}, the AdaLoRA adapter "
            f"{_size(self.bytes_adalora)} ({ratio:.0%})"
        ]
        if self.uniform_rank is not None:
            lines.append(f"uniform rank {self.uniform_rank} (zero-padded; the update is unchanged)")
        if self.scales_folded:
            lines.append("each module's scale folded into lora_B, one lora_alpha (the form llama.cpp reads)")
        by_type: dict[str, list[int]] = {}
        for name, rank in self.ranks.items():
            by_type.setdefault(module_type(name) or "other", []).append(rank)
        for kind in ordered_types(set(by_type)):
            values = by_type[kind]
            lines.append(
                f"  {kind:6s} kept rank {min(values)}-{max(values)}, mean {mean(values):.2f} over "
                f"{len(values)} modules ({sum(v == 0 for v in values)} left out at rank 0)"
            )
        for server in self.servers:
            lines.append(f"{'' if server.exact else 'warning: '}{server.server}: {server.how}")
        return lines


@dataclass
class Serving:
    """How one server reads an exported folder."""

    server: str
    """``PEFT``, ``vLLM`` or ``llama.cpp``."""
    exact: bool
    """True: the server computes the exported update (and heads) exactly."""
    how: str
    """How to load it (exact), or why the server would misread or refuse it and what to export instead."""


def vllm_max_lora_rank(largest: int) -> int | None:
    """The smallest of :data:`VLLM_MAX_LORA_RANKS` that holds ``largest`` (None: none does)."""
    return next((rank for rank in VLLM_MAX_LORA_RANKS if rank >= largest), None)


def serving(config: dict, largest_rank: int, folder: str | Path = "OUT") -> list[Serving]:
    """How PEFT, vLLM and llama.cpp read a LoRA adapter whose ``adapter_config.json`` is ``config`` and whose largest
    ``lora_A`` has ``largest_rank`` rows, each server's rule as in the module docstring.

    PEFT scales module k by α_k / r_k (its pattern entries, else ``lora_alpha`` / ``r``). vLLM is exact when every
    α_k / r_k equals ``lora_alpha / r``; llama.cpp when every α_k equals ``lora_alpha`` (it divides by each tensor's
    own rank r_k, as PEFT does).
    """
    alpha, rank = float(config["lora_alpha"]), int(config["r"])
    rank_pattern, alpha_pattern = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    modules = set(rank_pattern) | set(alpha_pattern)
    own = {key: (float(alpha_pattern.get(key, alpha)), int(rank_pattern.get(key, rank))) for key in modules}
    other_scale = [key for key, (a, r) in own.items() if not math.isclose(a / r, alpha / rank, rel_tol=1e-9)]
    other_alpha = [key for key, (a, _) in own.items() if not math.isclose(a, alpha, rel_tol=1e-9)]
    heads = list(dict.fromkeys(config.get("modules_to_save") or []))  # PEFT may list a head twice
    bias = config.get("bias") or "none"
    extra = f"trained heads (modules_to_save: {', '.join(heads)})" if heads else f"adapter biases (bias={bias})"
    max_lora_rank = vllm_max_lora_rank(largest_rank)
    if heads or bias != "none":
        vllm = (
            f"not this folder: it carries {extra}, which vLLM's LoRA loader refuses; vLLM serves LoRA adapters of "
            "generative models only. Serve it with PEFT, or merge it into the base: --merge."
        )
    elif other_scale:
        vllm = (
            f"not this folder: vLLM applies one lora_alpha/r = {alpha / rank:.6g} to every module, and "
            f"{len(other_scale)} module(s) here need another (--llama-cpp folded each module's scale into "
            "lora_B). Export without --llama-cpp for vLLM."
        )
    elif max_lora_rank is None:
        vllm = (
            f"not this folder: its largest rank {largest_rank} is above vLLM's largest --max-lora-rank "
            f"({VLLM_MAX_LORA_RANKS[-1]}); merge it: --merge."
        )
    else:
        vllm = (
            f"exact: vllm serve BASE_MODEL --enable-lora --max-lora-rank {max_lora_rank} --lora-modules "
            f"NAME={folder} (the largest rank here is {largest_rank}; --max-lora-rank must hold it)"
        )
    if heads or bias != "none":
        llama = (
            f"not this folder: it carries {extra}, and convert_lora_to_gguf.py stops at any tensor but "
            "lora_A/lora_B. Merge it instead: --merge."
        )
    elif other_alpha:
        llama = (
            "not this folder: convert_lora_to_gguf.py keeps lora_alpha alone and llama.cpp scales each tensor by "
            f"lora_alpha / its rank, so {len(other_alpha)} module(s) here would get another scale. Export with "
            "--llama-cpp (each module's scale folded into lora_B), --uniform-rank or --merge."
        )
    else:
        llama = f"exact: convert_lora_to_gguf.py --base BASE_MODEL_FOLDER {folder}"
    routes = [Serving("PEFT", True, f'exact: PeftModel.from_pretrained(base_model, "{folder}")')]
    routes.append(Serving("vLLM", vllm.startswith("exact"), vllm))
    routes.append(Serving("llama.cpp", llama.startswith("exact"), llama))
    return routes


def _size(count: int) -> str:
    return f"{count / 1024:,.1f} KiB" if count < 1024**2 else f"{count / 1024**2:,.1f} MiB"


def uniform_rank_for(largest: int, requested: int | str, choices: tuple[int, ...] = ()) -> int:
    """The uniform rank: ``requested`` as given (:func:`lora_export` refuses one below the largest kept rank), or for
    ``"auto"`` the largest kept rank, rounded up to the smallest of ``choices`` (e.g. :data:`VLLM_MAX_LORA_RANKS`) that
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
    fold_scales: bool = False,
) -> ExportSummary:
    """Write the finished run ``run``'s adapter to ``output`` as a PEFT LoRA adapter (exact ranks, or
    ``uniform_rank``: an int or ``"auto"``, see :func:`uniform_rank_for`; with ``fold_scales`` in the form llama.cpp
    reads, ``lora_export``), or with ``merge`` the base model with the update merged in (loadable by transformers'
    ``AutoModelFor…`` alone). The tokenizer comes along, and :data:`EXPORT_RECORD` says what was written and how each
    server reads it. ``output`` is written whole or not at all (a temporary folder renamed into place).

    Raises:
        FileExistsError: ``output`` holds files and ``overwrite`` is False.
        ValueError: a LoRA run without ``merge`` (its adapter is LoRA already), a 4-bit base with ``merge``, or
            ``fold_scales`` with ``merge``.
    """
    if merge and fold_scales:
        raise ValueError(
            "--merge writes a whole model: --llama-cpp applies to the LoRA adapter (a merged model "
            "reads right in llama.cpp as it is)."
        )
    run, output = Path(run), Path(output)
    config, task = open_run(run, overrides or [], "export", EXPORT_FIELDS)
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise FileExistsError(f"{output} already exists; pass --overwrite to replace it, or another --output.")
    if config.method == "lora" and not merge:
        raise ValueError(
            f"{run} trained plain LoRA: {run / ADAPTER_FOLDER} is already a standard PEFT LoRA adapter. "
            "Use it as it is, or pass --merge to merge it into the base model."
        )
    accelerator, prepared = load_run_model(run, config, task)
    model, tokenizer = accelerator.unwrap_model(prepared), run_tokenizer(run)
    staging = output.with_name(f".{output.name}.export-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        summary = _write(model, staging, uniform_rank, rank_choices, merge, fold_scales, output)
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


def _write(
    model, folder: Path, uniform_rank, rank_choices: tuple[int, ...], merge: bool, fold_scales: bool, output: Path
) -> ExportSummary:
    if merge:
        merged = merged_model(model)
        merged.save_pretrained(folder, safe_serialization=True)
        written = sum(path.stat().st_size for path in folder.glob("*.safetensors"))
        _record(folder, {"form": "merged"})
        return ExportSummary(folder, "merged", written, 0)
    rank = None
    if uniform_rank is not None:
        rank = uniform_rank_for(max(kept_ranks(model).values(), default=0), uniform_rank, rank_choices)
    export = lora_export(model, uniform_rank=rank, fold_scales=fold_scales)
    weights = write_lora_export(export, folder)
    kind = "lora" if rank is None else "lora-uniform"
    config = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
    servers = serving(config, export.largest_rank, output)
    routes = {server.server: {"exact": server.exact, "how": server.how} for server in servers}
    form = {"form": kind, "scales_folded_into_lora_B": export.scales_folded, "largest_rank": export.largest_rank}
    _record(folder, form | {"vllm_max_lora_rank": vllm_max_lora_rank(export.largest_rank), "servers": routes})
    return ExportSummary(folder, kind, weights.stat().st_size, 0, export.ranks, rank, servers, export.scales_folded)


def _record(folder: Path, record: dict) -> None:
    text = json.dumps(record, indent=2) + "\n"
    (folder / EXPORT_RECORD).write_text(text, encoding="utf-8")
