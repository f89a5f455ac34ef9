"""The console of train/sweep/demo/evaluate: one line per run by default, library warnings and load reports with
--verbose, and every logging, progress-bar and warning setting restored afterwards.

The commands run in fresh processes, as a user runs them, with the two lines that bitsandbytes' offline kernel
look-up logs on import on CPUs with AVX512-BF16 injected through the same loggers at the same moment (when PEFT
looks for bitsandbytes), so every host checks that they are held back."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import datasets
import huggingface_hub.utils as hub
from transformers.utils import logging as transformers_logging

import adalora_scores
from adalora_scores.cli import build_parser
from adalora_scores.engine.console import quiet_console, unless_quiet

# what a default run printed before: PEFT's and our FutureWarnings, transformers' load report (the STS-B head has
# one output where the tiny checkpoint has two), its "Loading weights" bar and its gradient checkpointing notice
NOISE = ["FutureWarning: `is_gradient_checkpointing`", "LOAD REPORT", "Loading weights", "use_cache=True"]
# (transformers 5.2x's "`gradient_checkpointing_enable` is deprecated" no longer occurs: the engine calls
# activation_checkpointing_enable where it exists)


KERNEL_LOOKUP = (  # what bitsandbytes 0.50 and kernels 0.19 log, offline, on such a CPU
    (
        "kernels._internals.hf_hub",
        "Skipping publisher trust check for 'kernels-community/quantization-bitsandbytes' "
        "because Hugging Face Hub is in offline mode.",
    ),
    (
        "bitsandbytes.backends.cpu.ops",
        "Failed to load CPU gemm_4bit_forward from kernels-community: Version 1 of "
        "'kernels-community/quantization-bitsandbytes' is not available in the local cache and Hugging Face Hub is in "
        "offline mode.. Please make sure you already `pip install kernels` and the kernels >= 0.11.1",
    ),
)
INJECTED = f"""
import importlib.abc, logging, sys
class KernelLookup(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "bitsandbytes":
            sys.meta_path.remove(self)
            for logger, message in {KERNEL_LOOKUP!r}:
                logging.getLogger(logger).warning(message)
sys.meta_path.insert(0, KernelLookup())
from adalora_scores.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _command(*arguments: str) -> subprocess.CompletedProcess:
    """``adalora-scores ARGUMENTS`` in a fresh process, as a user runs it (default warning filters, no terminal),
    with the kernel look-up's messages injected."""
    src = str(Path(adalora_scores.__file__).parents[1])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([src, env.get("PYTHONPATH", "")]))
    command = [sys.executable, "-c", INJECTED, *arguments]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)


def _train(tiny_model_dir, glue_root, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return _command(
        "train",
        "--task",
        "stsb",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(glue_root / "stsb"),
        "--output",
        str(out),
        "gradient_checkpointing=true",
        "init_r=4",
        "target_r=2",
        "max_seq_length=32",
        *extra,
    )


def test_default_train_prints_one_line_and_verbose_shows_the_library_output(tiny_model_dir, glue_root, tmp_path):
    quiet = _train(tiny_model_dir, glue_root, tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert quiet.stderr == "", quiet.stderr[-2000:]  # no warning, no load report, no bar (not a terminal)
    lines = quiet.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("stsb done in") and "pearson" in lines[0], quiet.stdout

    loud = _train(tiny_model_dir, glue_root, tmp_path / "loud", "--verbose")
    assert loud.returncode == 0, loud.stderr[-2000:]
    assert [item for item in NOISE if item not in loud.stderr] == [], loud.stderr[-3000:]
    assert all(message in loud.stderr for _, message in KERNEL_LOOKUP), loud.stderr[:3000]  # shown once asked
    lines = loud.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("stsb: 24 train examples") and lines[1] == quiet.stdout.strip()


def test_evaluate_prints_one_line(tiny_model_dir, glue_root, tmp_path):
    """Also without PEFT's false alarm about AdaLoRA's rank_pattern keys (adapter/peft/saving.py), which stock PEFT
    prints when it loads any AdaLoRA adapter."""
    run = tmp_path / "run"
    assert _train(tiny_model_dir, glue_root, run).returncode == 0
    evaluated = _command("evaluate", str(run))
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert evaluated.stderr == "", evaluated.stderr[-2000:]
    lines = evaluated.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("stsb evaluated: dev {'pearson'"), evaluated.stdout


def test_only_the_listed_import_messages_are_held(caplog):
    """(pytest's log capture stands in for the root logger's handlers here.)"""
    import logging

    from adalora_scores.engine.console import _held, hold_import_messages, show_held_messages

    _held.clear()
    other = "The installed version of bitsandbytes was compiled without GPU support."
    with hold_import_messages():
        for logger, message in KERNEL_LOOKUP:
            logging.getLogger(logger).warning(message)
        logging.getLogger("bitsandbytes.cextension").warning(other)
        assert caplog.messages == []  # nothing reaches a handler while held
    assert caplog.messages == [other]  # passed on
    assert [record.getMessage() for record in _held] == [message for _, message in KERNEL_LOOKUP]
    assert logging.getLogger("kernels").propagate and logging.getLogger("bitsandbytes").handlers == []
    show_held_messages()
    assert caplog.messages == [other, *(message for _, message in KERNEL_LOOKUP)]
    show_held_messages()
    assert len(caplog.messages) == 3 and _held == []


def _settings():
    return (
        transformers_logging.get_verbosity(),
        datasets.utils.logging.get_verbosity(),
        hub.logging.get_verbosity(),
        transformers_logging.is_progress_bar_enabled(),
        datasets.are_progress_bars_disabled(),
        hub.are_progress_bars_disabled(),
        list(warnings.filters),
    )


def test_quiet_console_hides_only_the_listed_warnings_and_restores_everything(capsys):
    before = _settings()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_console():
            warnings.warn(
                "`is_gradient_checkpointing` is deprecated and will be removed in v6.", FutureWarning, stacklevel=1
            )
            warnings.warn(
                "`is_gradient_checkpointing` is deprecated, but as a UserWarning.", UserWarning, stacklevel=1
            )
            warnings.warn("some other library change.", FutureWarning, stacklevel=1)
            inside = _settings()
            unless_quiet(print)("opening line")
        unless_quiet(print)("printed outside")
    assert [(w.category, str(w.message)) for w in caught] == [
        (UserWarning, "`is_gradient_checkpointing` is deprecated, but as a UserWarning."),
        (FutureWarning, "some other library change."),
    ]
    assert inside[:3] == (logging.ERROR,) * 3
    assert inside[3:6] == (False, True, True)
    assert capsys.readouterr().out == "printed outside\n"
    assert _settings() == before

    with quiet_console(verbose=True):
        assert _settings() == before
        unless_quiet(print)("verbose")
    assert capsys.readouterr().out == "verbose\n"


def test_verbose_flag_on_train_sweep_and_demo():
    parser = build_parser()
    assert parser.parse_args(["train", "--task", "rte", "--output", "o", "--verbose"]).verbose
    assert not parser.parse_args(["train", "--task", "rte", "--output", "o"]).verbose
    assert parser.parse_args(["sweep", "paper", "--output", "o", "--verbose"]).verbose
    assert parser.parse_args(["demo", "--verbose"]).verbose
