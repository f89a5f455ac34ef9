"""The command line starts without torch: importing ``adalora_scores.cli``, ``--help`` and a command's ``--help``
import neither torch, transformers nor PEFT (benchmarks/cli_startup.py times them); a command that runs does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import adalora_scores

HEAVY = ("torch", "transformers", "peft")
PROBE = """
import sys
import adalora_scores.cli
arguments = sys.argv[1:]
if arguments:
    try:
        adalora_scores.cli.main(arguments)
    except SystemExit as exit:
        assert exit.code == 0, exit.code
print(" ".join(name for name in {heavy!r} if name in sys.modules))
"""


def _imported(*arguments: str) -> list[str]:
    """The heavy packages in ``sys.modules`` after a fresh process imports the command line and runs ``arguments``."""
    src = str(Path(adalora_scores.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-c", PROBE.format(heavy=HEAVY), *arguments]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split("\n")[-2].split()


@pytest.mark.parametrize("arguments", [(), ("--help",), ("train", "--help"), ("sweep", "--help"), ("--version",)])
def test_the_command_line_and_its_help_import_no_torch(arguments):
    assert _imported(*arguments) == []


def test_a_command_that_runs_imports_the_library():
    """The probe sees torch where it is imported: ``scores`` lists the registered scores, which needs it."""
    assert _imported("scores") == list(HEAVY)


def test_the_module_runs_as_the_console_script():
    src = str(Path(adalora_scores.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "adalora_scores.cli", "train", "--help"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("usage: adalora-scores train"), result.stderr[-2000:]


def test_the_public_api_is_imported_on_first_use():
    """``import adalora_scores`` is light; its names load on first use, the same objects as their modules'."""
    from adalora_scores import Score, attach, register_score
    from adalora_scores.adapter import attach as adapter_attach
    from adalora_scores.scores import Score as base_score
    from adalora_scores.scores import register_score as base_register

    assert (attach, Score, register_score) == (adapter_attach, base_score, base_register)
    assert set(adalora_scores.__all__) <= set(dir(adalora_scores))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        adalora_scores.__getattr__("nothing")
