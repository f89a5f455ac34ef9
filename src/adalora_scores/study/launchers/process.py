"""The ``process`` launcher: each run in a fresh Python process on this machine, ``--jobs N`` at a time, the GPUs
divided among the jobs (``CUDA_VISIBLE_DEVICES``).

A run that dies (out of memory, a segfault, a kill) takes only its own process with it: the launcher records the
exit in the run's ``error.txt`` when the worker could not, and goes on with the other runs. Each worker's output is
in ``<output>/.launcher/logs/<run>.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

from adalora_scores.study.launchers.common import (
    LAUNCH_FOLDER,
    LaunchResult,
    RunJob,
    error_place,
    record_failure,
    write_job,
)
from adalora_scores.study.launchers.run_one import EXIT_CODES

__all__ = ["device_groups", "launch_processes", "visible_devices", "worker_command"]

_STATES = {code: state for state, code in EXIT_CODES.items()}


def visible_devices() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else every CUDA device torch sees (none
    on a machine without one)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [device.strip() for device in listed.split(",") if device.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def device_groups(devices: list[str], jobs: int) -> list[list[str]]:
    """The devices of each of ``jobs`` job slots. With at least as many devices as jobs, slot k gets its own
    contiguous block of ``len(devices) // jobs`` devices, the first ``len(devices) % jobs`` slots one more; with
    fewer devices than jobs, slot k shares device ``k mod len(devices)``; without devices, every slot gets none."""
    if jobs < 1:
        raise ValueError(f"--jobs {jobs}: give at least 1.")
    if not devices:
        return [[] for _ in range(jobs)]
    if len(devices) < jobs:
        return [[devices[slot % len(devices)]] for slot in range(jobs)]
    size, extra = divmod(len(devices), jobs)
    groups, start = [], 0
    for slot in range(jobs):
        end = start + size + (1 if slot < extra else 0)
        groups.append(devices[start:end])
        start = end
    return groups


def worker_command(job_file: Path) -> list[str]:
    """The command a worker runs for one job file."""
    return [sys.executable, "-m", "adalora_scores.study.launchers.run_one", str(job_file)]


def _exit_text(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def launch_processes(
    output: Path, jobs: list[RunJob], *, parallel: int = 1, devices: list[str] | None = None, echo=print
) -> LaunchResult:
    """Train each job's run in its own process, at most ``parallel`` at a time, slot k with the devices
    ``device_groups(devices, parallel)[k]`` (``devices`` default: :func:`visible_devices`). Returns when every
    process has ended."""
    groups = device_groups(visible_devices() if devices is None else devices, parallel)
    folder = output / LAUNCH_FOLDER
    (folder / "jobs").mkdir(parents=True, exist_ok=True)
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    waiting = deque(enumerate(jobs, start=1))
    running: dict[int, tuple[subprocess.Popen, RunJob, Path, object]] = {}
    result = LaunchResult()
    try:
        while waiting or running:
            for slot in range(parallel):
                if slot in running or not waiting:
                    continue
                number, job = waiting.popleft()
                name = job.run.name
                job_file, log = folder / "jobs" / f"{name}.pkl", folder / "logs" / f"{name}.log"
                write_job(job_file, job)
                environment = dict(os.environ)
                if groups[slot]:
                    environment["CUDA_VISIBLE_DEVICES"] = ",".join(groups[slot])
                stream = log.open("a", encoding="utf-8")
                process = subprocess.Popen(
                    worker_command(job_file), env=environment, stdout=stream, stderr=subprocess.STDOUT
                )
                on = f" on GPU {','.join(groups[slot])}" if groups[slot] else ""
                echo(f"[{number}/{len(jobs)}] {name}: started (process {process.pid}{on}, log {log})")
                running[slot] = (process, job, log, stream)
            time.sleep(0.05)
            for slot, (process, job, log, stream) in list(running.items()):
                code = process.poll()
                if code is None:
                    continue
                stream.close()
                del running[slot]
                name = job.run.name
                state = _STATES.get(code)
                if state is None:
                    record_failure(output, name, f"the worker process of run {name} {_exit_text(code)}; see {log}")
                    state = "failed"
                where = error_place(output, name, log)
                result.add(name, state, where)
                echo(f"    {name}: {state}" + (f" (see {where})" if state == "failed" else ""))
    finally:
        for process, _, _, stream in running.values():  # interrupted: no worker outlives the launcher
            process.terminate()
            process.wait()
            stream.close()
    return result
