"""Per-run overhead of the ``process`` and ``ray`` launchers against ``local``, on tiny runs.

One tiny grid (a tiny random BERT, the contrast task, ``--runs`` runs of a few optimizer steps each) is swept into a
fresh folder by each launcher in turn, side by side in one invocation: ``local`` in this process, ``process`` with
``--jobs`` workers, ``ray`` on a local Ray instance with ``--jobs`` CPUs (its start-up and shutdown timed apart).
The overhead per run is (launcher's wall time − local's) / runs; the table also gives the ratio of wall times.

    python benchmarks/launchers.py --runs 4 --jobs 2
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

WORDS = "the cat dog sat ran on a mat big small red blue house car tree good bad movie film".split()


def _grid(root: Path, runs: int) -> list:
    from adalora_scores.demo.tiny_models import save_tiny_model
    from adalora_scores.study.grid import SweepSpec
    from adalora_scores.tasks.contrast import write_contrast_task

    model = save_tiny_model(root / "model", WORDS)
    data = write_contrast_task(root / "data", train=40, dev=8)
    settings = {
        "model": str(model),
        "num_epochs": 1,
        "batch_size": 4,
        "max_seq_length": 24,
        "init_r": 4,
        "target_r": 2,
        "mask_interval": 1,
        "budget_warmup": 0.1,
        "budget_final": 0.2,
    }
    spec = SweepSpec(
        {"task": ["sst2"], "score": ["sensitivity"], "seed": list(range(1, runs + 1))},
        fixed=settings,
        data={"sst2": str(data)},
    )
    return spec.runs()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=4, help="runs in the grid (default 4)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time for process and ray (default 2)")
    options = parser.parse_args()

    from adalora_scores.engine.console import quiet_console
    from adalora_scores.study.launchers.common import jobs_for
    from adalora_scores.study.launchers.process import launch_processes
    from adalora_scores.study.sweep import run_sweep

    root = Path(tempfile.mkdtemp(prefix="launchers-benchmark-"))
    try:
        runs = _grid(root, options.runs)
        quiet = lambda *_: None  # noqa: E731
        seconds = {}
        with quiet_console():
            start = time.perf_counter()
            result = run_sweep(root / "local", runs, echo=quiet)
            seconds["local"] = time.perf_counter() - start
            assert len(result.ran) == options.runs, result
        start = time.perf_counter()
        result = launch_processes(
            root / "process", jobs_for(root / "process", runs), parallel=options.jobs, devices=[], echo=quiet
        )
        seconds[f"process --jobs {options.jobs}"] = time.perf_counter() - start
        assert len(result.ran) == options.runs, result
        import ray

        from adalora_scores.study.launchers.ray import launch_ray

        start = time.perf_counter()
        ray.init(num_cpus=options.jobs, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
        startup = time.perf_counter() - start
        start = time.perf_counter()
        result = launch_ray(root / "ray", jobs_for(root / "ray", runs), gpus_per_run=0, cpus_per_run=1, echo=quiet)
        seconds[f"ray ({options.jobs} CPUs)"] = time.perf_counter() - start
        start = time.perf_counter()
        ray.shutdown()
        shutdown = time.perf_counter() - start
        assert len(result.ran) == options.runs, result
    finally:
        shutil.rmtree(root, ignore_errors=True)
    local = seconds["local"]
    print(f"{options.runs} tiny runs; ray start-up {startup:.1f} s and shutdown {shutdown:.1f} s, not included")
    print("| launcher | wall s | s per run | overhead per run vs local, s | wall ratio to local |")
    print("|---|---:|---:|---:|---:|")
    for name, wall in seconds.items():
        overhead = (wall - local) / options.runs
        print(f"| {name} | {wall:.1f} | {wall / options.runs:.2f} | {overhead:+.2f} | {wall / local:.1f} |")


if __name__ == "__main__":
    main()
