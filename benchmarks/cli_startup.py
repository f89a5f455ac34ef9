"""Time the start of the command line: ``adalora-scores --help``, ``adalora-scores train --help`` and ``import
adalora_scores.cli``, each in a fresh interpreter, against ``import torch, peft`` (what ``--help`` paid when the
command line imported them) and an empty interpreter for scale. Each row is the median (and the minimum) wall time
of ``--reps`` runs; the rows run interleaved, so they share the machine's noise.

    python benchmarks/cli_startup.py [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
ROWS = {
    "adalora-scores --help": ["-m", "adalora_scores.cli", "--help"],
    "adalora-scores train --help": ["-m", "adalora_scores.cli", "train", "--help"],
    "import adalora_scores.cli": ["-c", "import adalora_scores.cli"],
    "import torch, peft (for scale)": ["-c", "import torch, peft"],
    "empty interpreter (for scale)": ["-c", "pass"],
}


def wall_time(arguments: list[str]) -> float:
    """Seconds from the start of a fresh ``python ARGUMENTS`` to its exit; the run must succeed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    start = time.perf_counter()
    subprocess.run([sys.executable, *arguments], env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="runs of each row (default 5)")
    reps = parser.parse_args().reps
    times: dict[str, list[float]] = {row: [] for row in ROWS}
    for _ in range(reps):
        for row, arguments in ROWS.items():
            times[row].append(wall_time(arguments))
    print(f"{reps} runs of each row:\n\n| command | median s | min s |\n| --- | ---: | ---: |")
    for row, measured in times.items():
        print(f"| `{row}` | {statistics.median(measured):.2f} | {min(measured):.2f} |")


if __name__ == "__main__":
    main()
