"""Run a sweep: skip finished runs, re-run failed or interrupted ones, never touch the results of others, and never
train one run twice when several workers share the output folder.

A run is finished exactly when its ``metrics.json`` exists (written last and atomically by ``train``) and its
``config.yaml`` holds the config the grid asks for. Each run writes only inside its own folder; an exception in one
run is recorded in that folder's ``error.txt`` and the sweep goes on. An interrupted run with a checkpoint
(``checkpoint_every``) resumes from it.

* **Claims.** Before training a run, the worker claims it (``claim.json``, :mod:`adalora_scores.study.claims`);
  runs claimed by a live worker are skipped and named, stale claims are taken over, and each takeover is recorded in
  the run folder's ``takeovers.jsonl`` for the report. Under a multi-process launch (``WORLD_SIZE`` > 1) the
  processes train every run together and claim nothing.
* **grid.json.** Once claimed, and before it trains, the run folder gets ``grid.json``: the run's row (score or
  baseline name), its grid values and the sweep file, so the report files the run under its own row whatever sweeps
  write into the folder later.
* **sweep.yaml** in the output folder is the union of every sweep into it: every run name with its grid values, and
  the list of specifications that wrote them, so ``report`` can mark runs that are missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from adalora_scores.runs.files import (
    CHECKPOINT_FILE,
    CLAIM_FILE,
    ERROR_FILE,
    GRID_FILE,
    SWEEP_MANIFEST,
    TAKEOVERS_FILE,
    atomic_write,
    config_changes,
    is_finished,
    read_config,
    write_json,
)
from adalora_scores.study.claims import DEFAULT_CLAIM_TIMEOUT, ClaimAttempt, try_claim
from adalora_scores.study.grid import Run, SweepSpec

__all__ = [
    "RunOutcome",
    "SweepResult",
    "check_changed",
    "manifest_lock",
    "read_manifest",
    "run_status",
    "run_sweep",
    "sweep_run",
    "write_manifest",
]

DONE, PENDING, INCOMPLETE, FAILED, CHANGED = "done", "pending", "incomplete", "failed", "changed"
RAN, SKIPPED, HELD = "ran", "skipped", "held"
"""Outcomes of :func:`sweep_run` besides :data:`FAILED`."""


def _bookkeeping(name: str) -> bool:
    """A file a sweep keeps in a run folder besides the run's own (its claim, grid values, takeovers)."""
    return name in (CLAIM_FILE, GRID_FILE, TAKEOVERS_FILE) or name.startswith((".claim", f".{CLAIM_FILE}"))


def _same_config(folder: Path, run: Run) -> bool:
    """The finished run was trained with the config the grid asks for (old names and missing new fields at their
    defaults are normalised first, so a folder written by an earlier version still counts)."""
    try:
        return not config_changes(read_config(folder), run.config)
    except (OSError, ValueError):
        return False


def run_status(output: Path, run: Run) -> str:
    """done, pending (no folder, or only a sweep's claim, ``grid.json`` or takeover record in it), incomplete
    (interrupted), failed (``error.txt``) or changed (finished with another config)."""
    folder = output / run.name
    if not folder.is_dir() or not any(not _bookkeeping(path.name) for path in folder.iterdir()):
        return PENDING
    if is_finished(folder):
        return DONE if _same_config(folder, run) else CHANGED
    return FAILED if (folder / ERROR_FILE).is_file() else INCOMPLETE


@dataclass
class SweepResult:
    ran: list[str]
    skipped: list[str]
    failed: list[str]
    held: list[str] = field(default_factory=list)
    """Runs another live worker had claimed (left to it)."""
    taken_over: list[str] = field(default_factory=list)
    """Runs whose stale claim this worker took over (and then trained)."""

    def add(self, name: str, outcome: RunOutcome) -> None:
        """File the run ``name`` under its outcome."""
        {RAN: self.ran, SKIPPED: self.skipped, FAILED: self.failed, HELD: self.held}[outcome.state].append(name)
        if outcome.taken_over:
            self.taken_over.append(name)


def _spec_entry(spec: SweepSpec) -> dict[str, Any]:
    entry = {
        "source": spec.source,
        "grid": spec.grid,
        "presets": spec.presets,
        "set": spec.fixed,
        "data": spec.data,
        "baselines": spec.baselines,
    }
    if spec.steps:  # the ladder's order and steps, for the report
        entry["ladder"] = [
            {"row": step.row, "from": step.parent, "change": spec.step_changes.get(step.row)} for step in spec.steps
        ]
    return entry


def read_manifest(output: Path) -> dict[str, Any]:
    """``sweep.yaml`` as ``{"specs": [...], "runs": {name: grid values}}`` (empty when there is none). A manifest
    written before sweeps added to it (one specification at the top level) reads as a list of one."""
    path = output / SWEEP_MANIFEST
    if not path.is_file():
        return {"specs": [], "runs": {}}
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is corrupt ({type(error).__name__}); move it away (the runs' grid.json files "
            "still say which row each run belongs to) and run the sweep again."
        ) from None
    if not isinstance(document, dict):
        raise ValueError(f"{path} is corrupt (not a mapping); move it away and run the sweep again.")
    specs = list(document.get("specs") or [])
    if not specs and "grid" in document:
        specs = [{key: document.get(key) for key in ("source", "grid", "presets", "set", "data", "baselines")}]
    return {"specs": specs, "runs": dict(document.get("runs") or {})}


@contextlib.contextmanager
def manifest_lock(output: Path) -> Iterator[None]:
    """Serialise read-add-write of ``sweep.yaml`` between processes (``fcntl.flock``; none where it is missing)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: sweeps into one folder at once are then the user's care
        yield
        return
    descriptor = os.open(output / f".{SWEEP_MANIFEST}.lock", os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)


def write_manifest(output: Path, spec: SweepSpec, runs: list[Run]) -> None:
    """Add this sweep to ``sweep.yaml``: every run of the whole grid (not only this shard) joins the runs already
    listed (a name listed again takes this sweep's grid values), and ``spec`` joins the list of specifications
    unless it is already there."""
    output.mkdir(parents=True, exist_ok=True)
    with manifest_lock(output):
        manifest = read_manifest(output)
        entry = _spec_entry(spec)
        specs = manifest["specs"] + ([] if entry in manifest["specs"] else [entry])
        listed = {**manifest["runs"], **{run.name: run.grid_values for run in runs}}
        document = {"specs": specs, "runs": listed}
        atomic_write(output / SWEEP_MANIFEST, yaml.safe_dump(document, sort_keys=False))


def _record_grid(folder: Path, run: Run) -> None:
    """``grid.json``: the row and grid values this run trains for, written before it trains."""
    write_json(
        folder / GRID_FILE,
        {"row": run.grid_values["score"], "grid_values": run.grid_values, "source": run.source, "name": run.name},
    )


def _record_takeover(folder: Path, attempt: ClaimAttempt, resumes: bool) -> None:
    """One line of ``takeovers.jsonl``: who held the stale claim, why it was stale, who took it and how."""
    record = {
        "time": time.time(),
        "taken_by": {"host": socket.gethostname(), "pid": os.getpid()},
        "previous": attempt.taken_over.to_json(),
        "reason": attempt.reason,
        "resumed_from_checkpoint": resumes,
    }
    with (folder / TAKEOVERS_FILE).open("a", encoding="utf-8") as stream:
        stream.write(json.dumps(record) + "\n")


def _single_process() -> bool:
    """False under a multi-process launch (``accelerate launch``/``torchrun`` set ``WORLD_SIZE``)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) <= 1
    except ValueError:
        return True


def check_changed(output: Path, runs: list[Run], force: bool) -> None:
    """Refuse to start when runs finished with a different config than the grid asks for, unless ``force``."""
    changed = [run.name for run in runs if run_status(output, run) == CHANGED]
    if changed and not force:
        raise FileExistsError(
            f"{len(changed)} finished run(s) in {output} used a different config (e.g. {changed[0]}); the grid or "
            "its presets changed. Use a new --output folder, or pass --force to re-run them."
        )


@dataclass(frozen=True)
class RunOutcome:
    """What :func:`sweep_run` did with one run: ``ran``, ``skipped`` (done), ``held`` (another live worker's
    claim) or ``failed`` (``error.txt`` written); ``taken_over`` when it took over a stale claim first."""

    state: str
    taken_over: bool = False


def sweep_run(
    output: Path,
    run: Run,
    *,
    force: bool = False,
    train_fn=None,
    echo=print,
    claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
    heartbeat_every: float | None = None,
    label: str = "",
) -> RunOutcome:
    """One run of a sweep, as every launcher trains it: skip it when done, claim it (unless under a multi-process
    launch), look again under the claim, record a takeover, then train it (resumed from its checkpoint when it was
    interrupted or failed with one). ``label`` prefixes the lines echoed (e.g. ``[3/20] ``)."""
    if train_fn is None:
        from adalora_scores.engine.train import train as train_fn
    folder = output / run.name
    if run_status(output, run) == DONE:  # looked at again: another worker may have finished it meanwhile
        return RunOutcome(SKIPPED)
    attempt = try_claim(folder, claim_timeout, heartbeat_every) if _single_process() else None
    if attempt is not None and attempt.claim is None:
        holder = attempt.holder.describe() if attempt.holder else "another worker taking it over"
        echo(f"{label}{run.name}: claimed by {holder}; left to it")
        return RunOutcome(HELD)
    taken_over = False
    with attempt.claim if attempt is not None else contextlib.nullcontext():
        status = run_status(output, run)  # now under the claim: finished by a worker that just let go of it?
        if status == DONE or (status == CHANGED and not force):
            return RunOutcome(SKIPPED)
        resumable = status in (INCOMPLETE, FAILED) and (folder / CHECKPOINT_FILE).is_file()
        echo(f"{label}{run.name} ({status})")
        if attempt is not None and attempt.taken_over is not None:
            _record_takeover(folder, attempt, resumable)
            how = "resuming from its checkpoint" if resumable else "starting again (no checkpoint)"
            echo(f"    took over the stale claim of {attempt.taken_over.holder()} ({attempt.reason}); {how}")
            taken_over = True
        trained = _train(train_fn, run, folder, resumable, echo)
    if attempt is not None and attempt.claim.lost:
        echo(
            f"    warning: another worker took over {run.name} while this one trained it (this worker's "
            "heartbeat stopped for longer than the claim timeout); check the run or re-run it."
        )
    return RunOutcome(RAN if trained else FAILED, taken_over)


def run_sweep(
    output: Path,
    runs: list[Run],
    *,
    force: bool = False,
    train_fn=None,
    echo=print,
    claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
    heartbeat_every: float | None = None,
) -> SweepResult:
    """Train every run that is not done and not claimed by a live worker, in order, in this process (the ``local``
    launcher; :func:`sweep_run` per run). Runs finished with a different config stop the sweep before it starts
    unless ``force`` (they are then re-run). ``claim_timeout``: seconds without a heartbeat after which another
    worker's claim is taken over (see :mod:`adalora_scores.study.claims`)."""
    check_changed(output, runs, force)
    result = SweepResult([], [], [])
    for number, run in enumerate(runs, start=1):
        outcome = sweep_run(
            output,
            run,
            force=force,
            train_fn=train_fn,
            echo=echo,
            claim_timeout=claim_timeout,
            heartbeat_every=heartbeat_every,
            label=f"[{number}/{len(runs)}] ",
        )
        result.add(run.name, outcome)
    return result


def _train(train_fn, run: Run, folder: Path, resumable: bool, echo) -> bool:
    """Train one run (resumed from its checkpoint when ``resumable``); a failure is recorded in ``error.txt``."""
    (folder / ERROR_FILE).unlink(missing_ok=True)
    try:
        _record_grid(folder, run)
        if resumable:
            train_fn(run.config, folder, resume=True)
        else:
            train_fn(run.config, folder, overwrite=True)
    except Exception:  # one run's failure must not stop or corrupt the others
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / ERROR_FILE, traceback.format_exc())
        echo(f"    failed: {traceback.format_exc().strip().splitlines()[-1]} (see {folder / ERROR_FILE})")
        return False
    return True
