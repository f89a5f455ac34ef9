"""A quiet console for ``train``, ``sweep`` and ``demo``: one line per run and a progress bar; library noise only
with ``--verbose``.

While :func:`quiet_console` is active (the default of those commands):

* the library warnings listed in :data:`NOISE` are ignored, each matched by category and message; every other warning
  (ours included, e.g. a skipped non-finite step) still shows;
* the ``transformers``, ``datasets`` and ``huggingface_hub`` loggers are set to ERROR: this hides transformers'
  LOAD REPORT table (printed whenever a task head is newly initialised or resized, i.e. on every fine-tuning run)
  and notices such as "use_cache=True is incompatible with gradient checkpointing"; errors still show;
* their progress bars are off ("Loading weights", dataset and Hub download bars); the training bar is ours and stays;
* the run's opening line (examples, steps, budget) is left out (:func:`unless_quiet`); the closing line with the
  results stays.

On exit every setting is put back as it was. ``quiet_console(verbose=True)`` changes nothing.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["NOISE", "quiet_console", "unless_quiet"]

NOISE: tuple[tuple[type[Warning], str], ...] = (
    # PEFT reads the property that transformers 5 renamed, on every model it wraps
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
    # our gradient_checkpointing=true: the new name (activation_checkpointing_enable) does not exist in transformers 4
    (FutureWarning, r"`gradient_checkpointing_enable` is deprecated"),
)
"""(category, message regex matched at the start of the message) of each library warning hidden by default."""

_verbose = True  # outside quiet_console (library use) everything is printed, as before


def unless_quiet(print_fn: Callable[..., Any]) -> Callable[..., Any]:
    """``print_fn`` itself, or, inside ``quiet_console(verbose=False)``, a function that prints nothing."""
    return print_fn if _verbose else _print_nothing


def _print_nothing(*args: Any, **kwargs: Any) -> None:
    pass


@contextmanager
def quiet_console(verbose: bool = False) -> Iterator[None]:
    """Hide known library noise for the duration of the ``with`` block (see the module doc); restore on exit."""
    global _verbose
    if verbose:
        yield
        return
    import datasets
    import huggingface_hub.utils as hub
    from huggingface_hub.utils import logging as hub_logging
    from transformers.utils import logging as transformers_logging

    loggers = [transformers_logging, datasets.utils.logging, hub_logging]
    levels = [module.get_verbosity() for module in loggers]
    bars = (
        transformers_logging.is_progress_bar_enabled(),
        not datasets.are_progress_bars_disabled(),
        not hub.are_progress_bars_disabled(),
    )
    previous = _verbose
    try:
        with warnings.catch_warnings():
            for category, message in NOISE:
                warnings.filterwarnings("ignore", message=message, category=category)
            for module in loggers:
                module.set_verbosity(logging.ERROR)
            transformers_logging.disable_progress_bar()  # also the Hub's
            datasets.disable_progress_bars()
            _verbose = False
            yield
    finally:
        _verbose = previous
        for module, level in zip(loggers, levels, strict=True):
            module.set_verbosity(level)
        with warnings.catch_warnings():  # enabling warns when an HF_*_DISABLE_PROGRESS_BARS variable forbids it
            warnings.simplefilter("ignore")
            if bars[0]:
                transformers_logging.enable_progress_bar()
            if bars[1]:
                datasets.enable_progress_bars()
            (hub.enable_progress_bars if bars[2] else hub.disable_progress_bars)()
