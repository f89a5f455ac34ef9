"""Run a sweep: skip finished runs, re-run failed or interrupted ones, never touch the results of others.

A run is finished exactly when its ``metrics.json`` exists (written last and atomically by ``train``) and its
``config.yaml`` holds the config the grid asks for. Each run writes only inside its own folder; an exception in one
run is recorded in that folder's ``error.txt`` and the sweep goes on. An interrupted run with a checkpoint
(``checkpoint_every``) resumes from it. ``sweep.yaml`` in the output folder records
the specification and every run name, so ``report`` can mark runs that are missing.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

import yaml

from adalora_scores.run_files import (
    CHECKPOINT_FILE,
    ERROR_FILE,
    SWEEP_MANIFEST,
    atomic_write,
    config_changes,
    is_finished,
    read_config,
)
from adalora_scores.study.grid import Run, SweepSpec

__all__ = ["SweepResult", "run_status", "run_sweep", "write_manifest"]

DONE, PENDING, INCOMPLETE, FAILED, CHANGED = "done", "pending", "incomplete", "failed", "changed"


def _same_config(folder: Path, run: Run) -> bool:
    """The finished run was trained with the config the grid asks for (old names and missing new fields at their
    defaults are normalised first, so a folder written by an earlier version still counts)."""
    try:
        return not config_changes(read_config(folder), run.config)
    except (OSError, ValueError):
        return False


def run_status(output: Path, run: Run) -> str:
    """done, pending (no folder), incomplete (interrupted), failed (``error.txt``) or changed (finished with
    another config)."""
    folder = output / run.name
    if not folder.is_dir() or not any(folder.iterdir()):
        return PENDING
    if is_finished(folder):
        return DONE if _same_config(folder, run) else CHANGED
    return FAILED if (folder / ERROR_FILE).is_file() else INCOMPLETE


@dataclass
class SweepResult:
    ran: list[str]
    skipped: list[str]
    failed: list[str]


def write_manifest(output: Path, spec: SweepSpec, runs: list[Run]) -> None:
    """``sweep.yaml``: the specification and every run of the whole grid (not only this shard)."""
    manifest = {"source": spec.source, "grid": spec.grid, "presets": spec.presets, "set": spec.fixed,
                "data": spec.data, "runs": {run.name: run.grid_values for run in runs}}  # fmt: skip
    atomic_write(output / SWEEP_MANIFEST, yaml.safe_dump(manifest, sort_keys=False))


def run_sweep(output: Path, runs: list[Run], *, force: bool = False, train_fn=None, echo=print) -> SweepResult:
    """Train every run that is not done, in order. Runs finished with a different config stop the sweep before it
    starts unless ``force`` (they are then re-run)."""
    if train_fn is None:
        from adalora_scores.engine.train import train as train_fn
    statuses = {run.name: run_status(output, run) for run in runs}
    changed = [name for name, status in statuses.items() if status == CHANGED]
    if changed and not force:
        raise FileExistsError(
            f"{len(changed)} finished run(s) in {output} used a different config (e.g. {changed[0]}); the grid or "
            "its presets changed. Use a new --output folder, or pass --force to re-run them."
        )
    result = SweepResult([], [], [])
    for number, run in enumerate(runs, start=1):
        if statuses[run.name] == DONE:
            result.skipped.append(run.name)
            continue
        folder = output / run.name
        echo(f"[{number}/{len(runs)}] {run.name} ({statuses[run.name]})")
        (folder / ERROR_FILE).unlink(missing_ok=True)
        resumable = statuses[run.name] in (INCOMPLETE, FAILED) and (folder / CHECKPOINT_FILE).is_file()
        try:
            if resumable:
                train_fn(run.config, folder, resume=True)
            else:
                train_fn(run.config, folder, overwrite=True)
        except Exception:  # one run's failure must not stop or corrupt the others
            folder.mkdir(parents=True, exist_ok=True)
            atomic_write(folder / ERROR_FILE, traceback.format_exc())
            echo(f"    failed: {traceback.format_exc().strip().splitlines()[-1]} (see {folder / ERROR_FILE})")
            result.failed.append(run.name)
            continue
        result.ran.append(run.name)
    return result
