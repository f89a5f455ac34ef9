"""Launchers: how ``sweep`` places its runs.

* ``local`` (default): every run in this process, one after another (:func:`~adalora_scores.study.sweep.run_sweep`).
* ``process``: each run in a fresh Python process, ``--jobs N`` at a time, the GPUs divided among the jobs
  (:mod:`~adalora_scores.study.launchers.process`).
* ``slurm``: a Slurm job array through submitit, one run per task, requeued from its checkpoint when preempted or
  timed out (:mod:`~adalora_scores.study.launchers.slurm`; extra ``slurm``).
* ``ray``: Ray tasks on a Ray cluster, retried from the checkpoint when a worker dies
  (:mod:`~adalora_scores.study.launchers.ray`; extra ``ray``).

Every launcher resolves and validates the whole run list first, skips finished runs, trains each run through the
same claim, resume and ``error.txt`` code (:func:`~adalora_scores.study.sweep.sweep_run`) and writes into the same
folder the report reads. The settings come from the command line, else from the sweep file's ``launcher:`` section
(the same names without the dashes, e.g. ``slurm_partition: gpu``, ``slurm_options: {account: lab}``), else
:data:`DEFAULTS`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from adalora_scores.study.launchers.common import LAUNCHERS, LaunchResult, RunJob, jobs_for, require

__all__ = ["DEFAULTS", "add_launcher_arguments", "launcher_settings", "sweep_command"]

DEFAULTS: dict[str, Any] = {
    "name": "local",
    "jobs": 1,
    "slurm_partition": None,
    "slurm_gpus_per_run": 1,
    "slurm_time": "4:00:00",
    "slurm_cpus_per_run": None,
    "slurm_options": {},
    "ray_address": None,
    "ray_gpus_per_run": None,
    "ray_cpus_per_run": 1.0,
    "ray_max_retries": 3,
}
"""Each setting when neither the command line nor the sweep file's ``launcher:`` section gives it
(``ray_gpus_per_run`` None: 1 where the Ray cluster has GPUs, else 0)."""

_EXTRAS = {"slurm": ("submitit", "slurm"), "ray": ("ray", "ray")}


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``sweep`` command's launcher options (their defaults: :data:`DEFAULTS`)."""
    group = parser.add_argument_group("launchers (docs/study.md, 'Running the study on a cluster')")
    group.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        help="local: every run in this process (default); process: each run in a fresh process, --jobs at a time; "
        "slurm: a Slurm job array through submitit; ray: Ray tasks",
    )
    group.add_argument("--jobs", type=int, help="process: runs at a time, the GPUs divided among them (default 1)")
    group.add_argument("--status", action="store_true", help="each run's state from the folder and the scheduler")
    group.add_argument("--slurm-partition", help="slurm: the partition")
    group.add_argument("--slurm-gpus-per-run", type=int, metavar="N", help="slurm: GPUs per run (default 1)")
    group.add_argument("--slurm-time", metavar="TIME", help="slurm: time limit per run, 240 or 4:00:00 (default)")
    group.add_argument("--slurm-cpus-per-run", type=int, metavar="N", help="slurm: CPUs per run")
    group.add_argument(
        "--slurm-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="slurm: any sbatch option, e.g. account=mylab or mem=32G; repeat for several",
    )
    group.add_argument("--ray-address", help="ray: the cluster to join (auto: the running one; default: start one)")
    group.add_argument(
        "--ray-gpus-per-run", type=float, metavar="N", help="ray: GPUs per run, fractions allowed (default 1 or 0)"
    )
    group.add_argument("--ray-cpus-per-run", type=float, metavar="N", help="ray: CPUs per run (default 1)")
    group.add_argument("--ray-max-retries", type=int, metavar="N", help="ray: retries of a run whose worker died (3)")


def launcher_settings(section: dict[str, Any], args: argparse.Namespace, source: str = "sweep file") -> dict[str, Any]:
    """The launcher settings: the command line's over the sweep file's ``launcher:`` section over
    :data:`DEFAULTS`; an unknown key in the section or an unknown launcher is an error that lists the known ones."""
    if not isinstance(section, dict):
        raise ValueError(
            f"{source}: launcher must be a mapping, e.g. launcher: {{name: slurm, slurm_partition: gpu}}."
        )
    unknown = sorted(set(section) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"{source}: unknown launcher setting(s) {unknown}; known: {', '.join(DEFAULTS)}.")
    settings = {**DEFAULTS, **section}
    given = {key: getattr(args, key, None) for key in DEFAULTS if key not in ("name", "slurm_options")}
    settings.update({key: value for key, value in given.items() if value is not None})
    if getattr(args, "launcher", None):
        settings["name"] = args.launcher
    if getattr(args, "slurm_option", None):
        from adalora_scores.study.launchers.common import parse_options

        settings["slurm_options"] = {**dict(settings["slurm_options"] or {}), **parse_options(args.slurm_option)}
    if settings["name"] not in LAUNCHERS:
        raise ValueError(f"{source}: unknown launcher {settings['name']!r}; known: {', '.join(LAUNCHERS)}.")
    if int(settings["jobs"]) < 1:
        raise ValueError(f"--jobs {settings['jobs']}: give at least 1.")
    return settings


def _slurm_parameters(settings: dict[str, Any]) -> dict[str, Any]:
    from adalora_scores.study.launchers.slurm import slurm_parameters

    return slurm_parameters(
        partition=settings["slurm_partition"],
        gpus_per_run=settings["slurm_gpus_per_run"],
        time=settings["slurm_time"],
        cpus_per_run=settings["slurm_cpus_per_run"],
        options=settings["slurm_options"],
    )


def _list_runs(output: Path, selected: list, runs: list, shard: str | None, scheduler: dict[str, str]) -> None:
    from adalora_scores.study.claims import read_claim
    from adalora_scores.study.sweep import run_status

    counts: dict[str, int] = {}
    for run in selected:
        status, claim = run_status(output, run), read_claim(output / run.name)
        counts[status] = counts.get(status, 0) + 1
        held = f" (claimed by {claim.describe()})" if claim and status != "done" else ""
        print(f"{status:10s} {run.name}{held}{scheduler.get(run.name, '')}")
    print(f"{len(selected)} of {len(runs)} runs" + (f" (shard {shard})" if shard else ""))
    if scheduler:
        print(", ".join(f"{count} {status}" for status, count in sorted(counts.items())))


def _scheduler_states(output: Path, selected: list) -> dict[str, str]:
    """`` [slurm job 123_4: RUNNING]`` per run that ``launcher.json`` records."""
    from adalora_scores.study.launchers.common import read_launcher_record

    recorded = read_launcher_record(output)["runs"]
    states = {}
    for run in selected:
        entry = recorded.get(run.name)
        if not entry:
            continue
        state = ""
        if entry.get("launcher") == "slurm":
            try:
                from adalora_scores.study.launchers.slurm import scheduler_state
            except ImportError:
                state = "unknown (submitit is not installed)"
            else:
                state = scheduler_state(str(entry["job_id"]), entry.get("folder"))
        states[run.name] = f"  [{entry.get('launcher')} job {entry['job_id']}: {state}]"
    return states


def sweep_command(args: argparse.Namespace, spec: Any, runs: list, selected: list, output: Path, echo=print) -> int:
    """``sweep`` once its runs are resolved and validated: ``--status``, ``--dry-run`` (with what the launcher would
    start, e.g. the sbatch script), or the launch. Returns the exit status: 1 when a run failed (each named, with
    where its error is)."""
    from adalora_scores.study.sweep import DONE, check_changed, run_status, run_sweep, write_manifest

    settings = launcher_settings(spec.launcher, args, spec.source)
    name = settings["name"]
    if args.status:  # the folder's state, and the scheduler's where it can be asked
        _list_runs(output, selected, runs, args.shard, _scheduler_states(output, selected))
        return 0
    if name in _EXTRAS:
        require(*_EXTRAS[name][:1], name, _EXTRAS[name][1])
    if args.dry_run:
        _list_runs(output, selected, runs, args.shard, {})
        pending = [run for run in selected if run_status(output, run) != DONE]
        _preview(name, settings, output, pending, echo)
        return 0
    if args.claim_timeout <= 0:
        raise ValueError(f"--claim-timeout {args.claim_timeout:g}: give a positive number of seconds, e.g. 600.")
    output.mkdir(parents=True, exist_ok=True)
    write_manifest(output, spec, runs)
    if name == "local":
        local = run_sweep(output, selected, force=args.force, claim_timeout=args.claim_timeout)
        held = f", {len(local.held)} left to other workers" if local.held else ""
        echo(f"sweep: {len(local.ran)} trained, {len(local.skipped)} already done, {len(local.failed)} failed{held}")
        return 1 if local.failed else 0
    check_changed(output, selected, args.force)
    done = [run.name for run in selected if run_status(output, run) == DONE]
    waiting = [run for run in selected if run.name not in done]
    jobs = jobs_for(output, waiting, force=args.force, claim_timeout=args.claim_timeout, verbose=args.verbose)
    result = _launch(name, settings, output, jobs, echo)
    result.skipped[:0] = done
    return _summary(name, result, output, echo)


def _preview(name: str, settings: dict[str, Any], output: Path, pending: list, echo) -> None:
    """What the launcher would start for the ``pending`` runs."""
    if name == "slurm":
        from adalora_scores.study.launchers.slurm import sbatch_script

        echo(f"slurm: a job array of {len(pending)} task(s), one run each; the sbatch script submitit would submit:")
        echo(sbatch_script(output, _slurm_parameters(settings), max(len(pending), 1)))
    elif name == "process":
        from adalora_scores.study.launchers.process import device_groups, visible_devices, worker_command

        groups = device_groups(visible_devices(), int(settings["jobs"]))
        on = "; ".join(f"job {k + 1}: GPU {','.join(g)}" for k, g in enumerate(groups) if g) or "no GPU"
        job_file = output / ".launcher" / "jobs" / "RUN.pkl"
        echo(
            f"process: {len(pending)} run(s), {settings['jobs']} at a time ({on}), each: "
            + " ".join(worker_command(job_file))
        )
    elif name == "ray":
        gpus = (
            "1 (0 where the cluster has none)"
            if settings["ray_gpus_per_run"] is None
            else settings["ray_gpus_per_run"]
        )
        echo(
            f"ray: {len(pending)} task(s) on {settings['ray_address'] or 'a local Ray instance'}, each {gpus} GPU and "
            f"{settings['ray_cpus_per_run']} CPU, retried {settings['ray_max_retries']} times when its worker dies"
        )


def _launch(name: str, settings: dict[str, Any], output: Path, jobs: list[RunJob], echo) -> LaunchResult:
    if not jobs:
        return LaunchResult()
    if name == "process":
        from adalora_scores.study.launchers.process import launch_processes

        return launch_processes(output, jobs, parallel=int(settings["jobs"]), echo=echo)
    if name == "slurm":
        from adalora_scores.study.launchers.slurm import SUBMITIT_FOLDER, launch_slurm

        tasks = launch_slurm(output, jobs, _slurm_parameters(settings))
        ids = {run: str(task.job_id) for run, task in tasks.items()}
        first = next(iter(ids.values()))
        echo(
            f"slurm: submitted {len(ids)} run(s) as job array {first.split('_')[0]} "
            f"(logs in {output / SUBMITIT_FOLDER})"
        )
        return LaunchResult(submitted=list(ids))
    from adalora_scores.study.launchers.ray import launch_ray

    gpus = settings["ray_gpus_per_run"]
    return launch_ray(
        output,
        jobs,
        address=settings["ray_address"],
        gpus_per_run=gpus,
        cpus_per_run=float(settings["ray_cpus_per_run"]),
        max_retries=int(settings["ray_max_retries"]),
        echo=echo,
    )


def _summary(name: str, result: LaunchResult, output: Path, echo) -> int:
    held = f", {len(result.held)} left to other workers" if result.held else ""
    if result.submitted:
        echo(
            f"sweep: {len(result.submitted)} submitted, {len(result.skipped)} already done; "
            f"adalora-scores sweep ... --output {output} --status shows their state"
        )
        return 0
    echo(
        f"sweep ({name}): {len(result.ran)} trained, {len(result.skipped)} already done, "
        f"{len(result.failed)} failed{held}"
    )
    for run, where in result.failed.items():
        echo(f"    failed: {run} (see {where})")
    return 1 if result.failed else 0
