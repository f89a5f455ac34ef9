"""The ``ray`` launcher: each run as a Ray task that asks for ``--ray-gpus-per-run`` GPUs (fractions allowed) and
``--ray-cpus-per-run`` CPUs, on the cluster at ``--ray-address`` (a local Ray instance by default).

Each task runs in a worker process of its own (``max_calls=1``: the process ends with the run, taking its GPU memory
with it). When a worker dies (a lost node, a kill), Ray retries the task up to ``--ray-max-retries`` times; the retry
takes over the dead worker's claim and resumes the run from its ``checkpoint.pt``. A run that fails in Python writes
``error.txt`` and is not retried. Every node must see the output folder (a shared filesystem).
"""

from __future__ import annotations

import logging
from pathlib import Path

import ray

from adalora_scores.study.launchers.common import LaunchResult, RunJob, error_place, record_failure, run_job

__all__ = ["launch_ray"]


def _task(job: RunJob) -> str:
    return run_job(job, echo=lambda text: print(text, flush=True))


def launch_ray(
    output: Path,
    jobs: list[RunJob],
    *,
    address: str | None = None,
    gpus_per_run: float | None = None,
    cpus_per_run: float = 1.0,
    max_retries: int = 3,
    echo=print,
) -> LaunchResult:
    """Run every job as a Ray task and wait for all of them. Connects to ``address`` (``auto``: the running
    cluster; None: a local instance) unless Ray is initialised already in this process, and disconnects only from
    what it started. ``gpus_per_run`` None: 1 where the cluster has GPUs, else 0."""
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
    if gpus_per_run is None:
        gpus_per_run = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    remote = ray.remote(num_gpus=gpus_per_run, num_cpus=cpus_per_run, max_retries=max_retries, max_calls=1)(_task)
    result = LaunchResult()
    try:
        references = [(job, remote.remote(job)) for job in jobs]
        echo(f"ray: {len(jobs)} run(s) submitted ({gpus_per_run:g} GPU, {cpus_per_run:g} CPU each)")
        for job, reference in references:
            name = job.run.name
            try:
                state = ray.get(reference)
            except ray.exceptions.RayError as error:  # the worker died more often than max_retries allows
                first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
                record_failure(output, name, f"the Ray task of run {name} failed: {type(error).__name__}: {first}")
                state = "failed"
            result.add(name, state, error_place(output, name))
            echo(f"    {name}: {state}")
    finally:
        if started:
            ray.shutdown()
    return result
