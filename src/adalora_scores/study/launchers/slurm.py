"""The ``slurm`` launcher: the runs as one Slurm job array through submitit, one run per task.

Each task calls a :class:`SweepTask` (a ``submitit.helpers.Checkpointable``). When Slurm preempts the task or its
time runs out, submitit's signal handler calls :meth:`SweepTask.checkpoint`, which resubmits the same task; the
requeued task finds the run interrupted and resumes it from its ``checkpoint.pt`` (``checkpoint_every``), exactly.
The claim files still guard each run, so an array and a hand-started worker never train one run twice.

``sweep`` returns once the array is submitted; the job ids go into ``launcher.json`` for ``sweep --status``.
submitit keeps its pickles and logs in ``<output>/.submitit``; the output folder must be on a filesystem that every
node sees.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path
from typing import Any

import submitit
from submitit.helpers import Checkpointable, DelayedSubmission

from adalora_scores.study.launchers.common import RunJob, error_place, record_submission, run_job

__all__ = ["SUBMITIT_FOLDER", "SweepTask", "parse_minutes", "launch_slurm", "sbatch_script", "slurm_parameters"]

SUBMITIT_FOLDER = ".submitit"


class SweepTask(Checkpointable):
    """One run as a submitit job: trains it (:func:`run_job`), raises when it failed (so Slurm marks the task
    failed), returns the outcome otherwise."""

    def __init__(self, job: RunJob) -> None:
        self.job = job

    def __call__(self) -> str:
        state = run_job(self.job, echo=lambda text: print(text, flush=True))
        if state == "failed":
            where = error_place(Path(self.job.output), self.job.run.name)
            raise RuntimeError(f"run {self.job.run.name} failed; see {where}")
        return state

    def checkpoint(self) -> DelayedSubmission:
        """Requeue this same task: the next attempt resumes the run from its checkpoint (the run folder's
        ``checkpoint.pt``; the task itself holds no state)."""
        return DelayedSubmission(self)


def parse_minutes(text: str | int) -> int:
    """A Slurm time limit as minutes: ``240``, ``4:00:00`` (h:mm:ss), ``90:00`` (m:ss) or ``1-12:00:00``
    (d-hh:mm:ss); seconds round up."""
    value = str(text).strip()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value)
    if not match:
        raise ValueError(f"--slurm-time {text!r}: give minutes (240) or [days-]hours:minutes:seconds (4:00:00).")
    days, first, second, third = match.groups()
    if third is not None:  # h:mm:ss
        hours, minutes, seconds = int(first), int(second), int(third)
    elif second is not None:  # m:ss, or d-h:mm
        hours, minutes, seconds = (int(first), int(second), 0) if days else (0, int(first), int(second))
    else:
        hours, minutes, seconds = (int(first), 0, 0) if days else (0, int(first), 0)
    total = int(days or 0) * 1440 + hours * 60 + minutes + (1 if seconds else 0)
    if total < 1:
        raise ValueError(f"--slurm-time {text!r}: the time limit must be at least one minute.")
    return total


def _submitit_names() -> set[str]:
    from submitit.slurm.slurm import _get_default_parameters

    return set(_get_default_parameters())


def slurm_parameters(
    *,
    partition: str | None = None,
    gpus_per_run: int = 1,
    time: str | int = 240,
    cpus_per_run: int | None = None,
    options: dict[str, Any] | None = None,
    job_name: str = "adalora-sweep",
) -> dict[str, Any]:
    """The ``SlurmExecutor.update_parameters`` of the array: one node, one task and ``gpus_per_run`` GPUs per run;
    an option that submitit names (``mem``, ``account``, ``qos``, ``constraint``, ...; dashes read as
    underscores) goes under its name, any other becomes an ``#SBATCH --key=value`` line."""
    parameters: dict[str, Any] = {
        "job_name": job_name,
        "time": parse_minutes(time),
        "nodes": 1,
        "ntasks_per_node": 1,
    }
    if gpus_per_run:
        parameters["gpus_per_node"] = int(gpus_per_run)
    if partition:
        parameters["partition"] = partition
    if cpus_per_run:
        parameters["cpus_per_task"] = int(cpus_per_run)
    known, additional = _submitit_names(), {}
    for key, value in (options or {}).items():
        name = str(key).replace("-", "_")
        if name in known and name not in ("additional_parameters", "map_count"):
            parameters[name] = value
        else:
            additional[str(key)] = value
    if additional:
        parameters["additional_parameters"] = additional
    return parameters


def sbatch_script(output: Path, parameters: dict[str, Any], count: int) -> str:
    """The sbatch script submitit would submit for an array of ``count`` runs (rendered by submitit, nothing
    submitted)."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder = output.resolve() / SUBMITIT_FOLDER / "%j"
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(command=command, folder=folder, map_count=count, **parameters)


def launch_slurm(
    output: Path, jobs: list[RunJob], parameters: dict[str, Any], executor: submitit.Executor | None = None
) -> dict[str, submitit.Job]:
    """Submit one task per job, as one job array (``executor`` default: a ``SlurmExecutor`` with ``parameters``,
    :func:`slurm_parameters`), and record the job ids in ``launcher.json``. Returns run name → submitit job."""
    folder = output.resolve() / SUBMITIT_FOLDER / "%j"
    if executor is None:
        executor = submitit.SlurmExecutor(folder=folder)
        executor.update_parameters(**parameters)
    submitted = executor.submit_array([SweepTask(job) for job in jobs])
    tasks = {job.run.name: task for job, task in zip(jobs, submitted, strict=True)}
    record_submission(output, "slurm", {name: str(task.job_id) for name, task in tasks.items()}, folder)
    return tasks


def scheduler_state(job_id: str, folder: str | None) -> str:
    """What Slurm says about a job (``sacct``), or why it cannot say."""
    import shutil

    if shutil.which("sacct") is None:
        return "unknown (no sacct on this machine)"
    try:
        return str(submitit.SlurmJob(folder=folder or ".", job_id=job_id).state)
    except Exception as error:  # a scheduler that does not answer must not stop --status
        return f"unknown ({type(error).__name__})"
