"""What every launcher shares: the job of one run, the single-run worker step, the missing-extra error, the record
of submitted jobs (``launcher.json``) and a launch's result.

Every launcher other than ``local`` trains each run in a process of its own through :func:`run_job`, which loads the
sweep's plugins and calls :func:`adalora_scores.study.sweep.sweep_run`: the same claim, skip, resume and
``error.txt`` code the in-process sweep runs. The run configs are resolved once, in the process that launches, and
reach the workers as the :class:`~adalora_scores.study.grid.Run` itself (pickled), so a worker trains exactly the
config the local sweep would.
"""

from __future__ import annotations

import importlib
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from adalora_scores.runs.atomic import atomic_save, atomic_write, read_json, write_json
from adalora_scores.runs.files import ERROR_FILE, is_finished
from adalora_scores.study.claims import DEFAULT_CLAIM_TIMEOUT
from adalora_scores.study.grid import Run

__all__ = [
    "LAUNCHER_FILE",
    "LAUNCHERS",
    "LAUNCH_FOLDER",
    "LaunchResult",
    "RunJob",
    "error_place",
    "jobs_for",
    "parse_options",
    "plugin_specs",
    "read_launcher_record",
    "record_failure",
    "record_submission",
    "require",
    "run_job",
]

LAUNCHERS = ("local", "process", "slurm", "ray")
LAUNCHER_FILE = "launcher.json"
"""In the output folder: the jobs a scheduler was given, per run (``sweep --status`` asks the scheduler about them)."""
LAUNCH_FOLDER = ".launcher"
"""In the output folder: the ``process`` launcher's job files (``jobs/<run>.pkl``) and logs (``logs/<run>.log``)."""


@dataclass(frozen=True)
class RunJob:
    """One run for a worker process: where, what (the resolved run) and how (the sweep's options)."""

    output: str
    run: Run
    plugins: tuple[str, ...] = ()
    """The plugins the launching process imported (``.py`` paths or module names), imported again by the worker."""
    force: bool = False
    claim_timeout: float = DEFAULT_CLAIM_TIMEOUT
    verbose: bool = False


def plugin_specs() -> tuple[str, ...]:
    """The plugin files and modules this process has imported (entry points load by themselves in every worker)."""
    from adalora_scores.plugins.loading import ENTRY_POINT, loaded_plugins

    return tuple(record.spec for record in loaded_plugins() if record.kind != ENTRY_POINT)


def jobs_for(
    output: Path,
    runs: list[Run],
    *,
    force: bool = False,
    claim_timeout: float = DEFAULT_CLAIM_TIMEOUT,
    verbose: bool = False,
) -> list[RunJob]:
    """One job per run, each with the plugins this process imported (the sweep file's and ``--plugin``'s)."""
    plugins = plugin_specs()
    return [RunJob(str(output.resolve()), run, plugins, force, claim_timeout, verbose) for run in runs]


def run_job(job: RunJob, echo=print) -> str:
    """Train the job's run in this process as the in-process sweep would (claim, skip when done, resume from a
    checkpoint, ``error.txt`` on failure); returns the outcome: ``ran``, ``skipped``, ``held`` or ``failed``."""
    from adalora_scores.engine.console import quiet_console
    from adalora_scores.plugins.loading import load_entry_points, load_plugins
    from adalora_scores.study.sweep import sweep_run

    load_entry_points()
    load_plugins(list(job.plugins), where="sweep plugin")
    with quiet_console(verbose=job.verbose):
        outcome = sweep_run(Path(job.output), job.run, force=job.force, claim_timeout=job.claim_timeout, echo=echo)
    return outcome.state


def write_job(path: Path, job: RunJob) -> None:
    """A job file for ``python -m adalora_scores.study.launchers.run_one``."""
    data = pickle.dumps(job)
    atomic_save(path, lambda stream: stream.write(data))


def read_job(path: Path) -> RunJob:
    """The job a launching process wrote with :func:`write_job` (a file of the user's own output folder)."""
    job = pickle.loads(path.read_bytes())
    if not isinstance(job, RunJob):
        raise ValueError(f"{path} is not a sweep job file; start the sweep again to write it.")
    return job


def record_failure(output: Path, name: str, message: str) -> None:
    """``error.txt`` for a run whose worker ended without writing one (killed, out of memory, a crash in native
    code), unless the run finished."""
    folder = output / name
    if is_finished(folder):
        return
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / ERROR_FILE).is_file():
        atomic_write(folder / ERROR_FILE, message + "\n")


def require(module: str, launcher: str, extra: str) -> ModuleType:
    """Import ``module`` for ``launcher``; a missing one names the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"the {launcher} launcher needs {module}: pip install -e '.[{extra}]'") from None


def read_launcher_record(output: Path) -> dict[str, Any]:
    """``launcher.json``: ``{"runs": {run name: {"launcher", "job_id", "folder", "time"}}}`` (empty when none)."""
    path = output / LAUNCHER_FILE
    if not path.is_file():
        return {"runs": {}}
    try:
        document = read_json(path)
    except ValueError:  # not JSON, or not UTF-8
        raise ValueError(f"{path} is corrupt; move it away (it only records submitted job ids).") from None
    return {"runs": dict(document.get("runs") or {})}


def record_submission(output: Path, launcher: str, jobs: dict[str, str], folder: Path | None = None) -> None:
    """Add the scheduler's job id of each run (``jobs``: run name → job id) to ``launcher.json``; a run submitted
    again keeps its latest job."""
    from adalora_scores.study.sweep import manifest_lock

    with manifest_lock(output):
        record = read_launcher_record(output)
        now = time.time()
        for name, job_id in jobs.items():
            record["runs"][name] = {
                "launcher": launcher,
                "job_id": job_id,
                "folder": str(folder) if folder else None,
                "time": now,
            }
        write_json(output / LAUNCHER_FILE, record)


@dataclass
class LaunchResult:
    """What a launcher did: runs trained, skipped (done), failed (with where to look), left to other workers, or
    submitted to a scheduler (which trains them later)."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    """Run name → where its error is (``error.txt``, the worker's log)."""
    held: list[str] = field(default_factory=list)
    submitted: list[str] = field(default_factory=list)

    def add(self, name: str, state: str, where: str = "") -> None:
        if state == "failed":
            self.failed[name] = where
        else:
            {"ran": self.ran, "skipped": self.skipped, "held": self.held, "submitted": self.submitted}[state].append(
                name
            )


def error_place(output: Path, name: str, log: Path | None = None) -> str:
    """Where to read why a run failed."""
    where = str(output / name / ERROR_FILE)
    return f"{where} and {log}" if log is not None else where


def parse_options(pairs: list[str]) -> dict[str, Any]:
    """``--slurm-option KEY=VALUE`` pairs as a mapping (values read as YAML scalars: ``mem_gb=32`` gives 32)."""
    options = {}
    for pair in pairs:
        key, separator, text = pair.partition("=")
        if not separator or not key.strip():
            raise ValueError(f"--slurm-option {pair!r}: expected KEY=VALUE, e.g. --slurm-option account=mylab.")
        options[key.strip()] = yaml.safe_load(text) if text else ""
    return options
