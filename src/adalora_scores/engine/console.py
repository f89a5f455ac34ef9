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

Messages logged while the package is imported come before any command runs. :func:`hold_import_messages` (around the
package's own imports) holds back those listed in :data:`IMPORT_NOISE`, for library use too: the offline kernel
look-up that bitsandbytes makes on import on CPUs with AVX512-BF16 (PEFT imports bitsandbytes whenever it is
installed). ``--verbose`` shows them (:func:`show_held_messages`); every other record of those loggers is passed on
at once.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "IMPORT_NOISE",
    "NOISE",
    "hold_import_messages",
    "progress_bar",
    "quiet_console",
    "show_held_messages",
    "unless_quiet",
]

NOISE: tuple[tuple[type[Warning], str], ...] = (
    # PEFT reads the property that transformers 5 renamed, on every model it wraps
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
    # our gradient_checkpointing=true: the new name (activation_checkpointing_enable) does not exist in transformers 4
    (FutureWarning, r"`gradient_checkpointing_enable` is deprecated"),
)
"""(category, message regex matched at the start of the message) of each library warning hidden by default."""

IMPORT_NOISE: tuple[tuple[str, str], ...] = (
    # bitsandbytes >= 0.49 asks the `kernels` package for a Hub kernel on import where the CPU has AVX512-BF16;
    # offline (HF_HUB_OFFLINE=1, or no network) it prints both lines and falls back to its own kernel
    ("kernels", r"Skipping publisher trust check for '[^']*' because Hugging Face Hub is in offline mode"),
    ("bitsandbytes", r"Failed to load CPU gemm_4bit_forward from kernels-community"),
)
"""(top-level logger name, message regex matched at the start of the message) of each import-time message held
back by :func:`hold_import_messages`."""

_held: list[logging.LogRecord] = []
_verbose = True  # outside quiet_console (library use) everything is printed


def unless_quiet(print_fn: Callable[..., Any]) -> Callable[..., Any]:
    """``print_fn`` itself, or, inside ``quiet_console(verbose=False)``, a function that prints nothing."""
    return print_fn if _verbose else _print_nothing


def progress_bar(items: Any, description: str | None, main_process: bool = True) -> Any:
    """``items`` with a progress bar named ``description`` (tqdm, as training shows it: on the main process, and on a
    terminal only), or ``items`` itself when ``description`` is None."""
    if description is None:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=description, disable=None if main_process else True, leave=False)


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


class _Catcher(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _is_import_noise(record: logging.LogRecord) -> bool:
    top = record.name.split(".", 1)[0]
    return any(top == name and re.match(pattern, record.getMessage()) for name, pattern in IMPORT_NOISE)


@contextmanager
def hold_import_messages() -> Iterator[None]:
    """Catch what the loggers of :data:`IMPORT_NOISE` log inside the block; afterwards keep the listed messages for
    :func:`show_held_messages` and pass every other record on to its logger's handlers, as if never caught."""
    loggers = [logging.getLogger(name) for name in sorted({name for name, _ in IMPORT_NOISE})]
    catcher, propagate = _Catcher(), [logger.propagate for logger in loggers]
    for logger in loggers:
        logger.addHandler(catcher)
        logger.propagate = False  # nothing reaches the root logger or logging's last-resort stderr handler
    try:
        yield
    finally:
        for logger, value in zip(loggers, propagate, strict=True):
            logger.removeHandler(catcher)
            logger.propagate = value
        for record in catcher.records:
            if _is_import_noise(record):
                _held.append(record)
            else:
                logging.getLogger(record.name).handle(record)


def show_held_messages() -> None:
    """Pass the held import messages on to their loggers (printed as they would have been), once."""
    while _held:
        record = _held.pop(0)
        logging.getLogger(record.name).handle(record)
