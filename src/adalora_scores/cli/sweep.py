"""Run every run of a sweep file's grid that has not finished, one run folder each under --output; finished runs are
skipped, failed or interrupted ones re-run. Several workers may share --output (--shard, claims). key=value values
apply to every run. docs/study.md explains sweep files."""

from __future__ import annotations

import argparse
from pathlib import Path

from adalora_scores.cli.common import add_run_options, integers
from adalora_scores.study.launchers import add_launcher_arguments

HELP = "run a grid of scores x tasks x seeds (x any key), one run folder each"
EXAMPLES = """  adalora-scores sweep paper --output results/paper --dry-run   # list the runs of the bundled grid
  adalora-scores sweep my-sweep.yaml --output results/mine --seeds 1,2,3
  adalora-scores sweep paper --output results/paper --shard 2/8   # the second of 8 workers
  adalora-scores sweep paper --output results/paper --launcher process --jobs 4   # a fresh process per run
  adalora-scores sweep paper --output /shared/paper --launcher slurm --slurm-partition gpu --dry-run"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    spec_help = "sweep YAML (e.g. presets/sweep/paper.yaml) or bundled name (paper)"
    parser.add_argument("spec", metavar="SWEEP", help=spec_help)
    parser.add_argument("--output", required=True, help="folder holding one run folder per run")
    parser.add_argument("--seeds", help="comma-separated seeds replacing the grid's, e.g. 1,2,3")
    parser.add_argument("--shard", help="i/n: run only every n-th run starting at the i-th (1-based), e.g. 2/8")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and their status; run nothing")
    parser.add_argument("--force", action="store_true", help="re-run finished runs whose config changed")
    claim_help = (
        "workers sharing --output claim each run before training it and skip runs claimed by others; a claim "
        "whose heartbeat is older than this (default 600 = 10 minutes), or whose process on this host is gone, is "
        "taken over and the run resumes from its checkpoint"
    )
    parser.add_argument("--claim-timeout", type=float, default=600.0, metavar="SECONDS", help=claim_help)
    add_launcher_arguments(parser)
    overrides = "any TrainConfig key, set for every run over the sweep file's set: values, e.g. max_train_samples=1000"
    add_run_options(parser, overrides)


def grid_lists(spec, overrides: list[str]) -> list[str]:
    """Set the grid lists that ``overrides`` give as YAML lists (``learning_rate=[1e-4,3e-4]``) on ``spec``; returns
    the other overrides."""
    import yaml

    from adalora_scores.config import ALIASES, canonical_values

    rest = []
    for pair in overrides:
        key, _, text = pair.partition("=")
        key = ALIASES.get(key, key)
        value = yaml.safe_load(text) if key in spec.grid else None
        if isinstance(value, list):
            if not value:
                raise ValueError(f"{pair}: a grid list needs at least one value, e.g. {key}=[1e-4,3e-4].")
            spec.grid[key] = canonical_values({key: value}, pair)[key]
        else:
            rest.append(pair)
    return rest


def run(args: argparse.Namespace) -> int:
    from adalora_scores.config import SCALE_KEYS
    from adalora_scores.presets.overrides import parse_overrides
    from adalora_scores.study.grid import load_sweep, parse_shard, shard
    from adalora_scores.study.launchers import sweep_command

    seeds = None if args.seeds is None else integers(args.seeds, "--seeds", "integers, e.g. 1,2,3")
    spec = load_sweep(args.spec, seeds)
    args.overrides = grid_lists(spec, args.overrides)
    for key, value in parse_overrides(args.overrides).items():  # score_options.x / task_options.x merge by name
        if key in SCALE_KEYS:  # the update scale given one way replaces the file's other way, in set and grid
            other = next(name for name in SCALE_KEYS if name != key)
            spec.fixed.pop(other, None)
            spec.grid.pop(other, None)
        if key in spec.grid:  # a grid key given one value: that value for every run (e.g. task=sst2)
            spec.grid[key] = [value]
            continue
        mapping = spec.fixed.get(key)
        spec.fixed[key] = {**mapping, **value} if isinstance(value, dict) and isinstance(mapping, dict) else value
    runs = spec.runs()  # resolves and validates every config before anything runs
    mine = shard(runs, *parse_shard(args.shard)) if args.shard else runs
    return sweep_command(args, spec, runs, mine, Path(args.output))  # --status, --dry-run or the launch
