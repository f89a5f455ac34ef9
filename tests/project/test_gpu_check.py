"""``scripts/gpu-check.sh --device cpu``: the GPU check's code paths on shrunken models, as CI runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_gpu_check_runs_on_cpu():
    env = {**os.environ, "PYTHON": sys.executable, "PYTHON_SET": "1"}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu-check.sh"), "--device", "cpu"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    checks = {line.split(" | ")[0].removeprefix("| ") for line in table[1:]}
    assert {
        "end to end, tiny BERT",
        "allocator against PEFT",
        "training throughput",
        "Llama-shaped, lora",
        "Llama-shaped, adalora-peft",
        "Llama-shaped, adalora-ours",
    } <= checks
    assert "0 failed" in done.stdout and "FAILED" not in done.stdout
    assert done.stderr.count("Warning") == 0, done.stderr[-2000:]
