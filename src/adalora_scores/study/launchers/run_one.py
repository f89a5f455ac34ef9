"""The single-run worker of the ``process`` launcher: ``python -m adalora_scores.study.launchers.run_one JOB_FILE``.

It trains the run of the job file (:func:`~adalora_scores.study.launchers.common.run_job`) and exits with
:data:`EXIT_CODES`: 0 trained, 1 failed (``error.txt`` in the run folder), 3 left to another worker's live claim,
4 already done. Any other exit (a signal, ``os._exit``) means the process died before it could say.
"""

from __future__ import annotations

import sys
from pathlib import Path

from adalora_scores.study.launchers.common import read_job, run_job

__all__ = ["EXIT_CODES", "main"]

EXIT_CODES = {"ran": 0, "failed": 1, "held": 3, "skipped": 4}


def main(argv: list[str] | None = None) -> int:
    arguments = sys.argv[1:] if argv is None else argv
    if len(arguments) != 1:
        print("usage: python -m adalora_scores.study.launchers.run_one JOB_FILE", file=sys.stderr)
        return 2
    state = run_job(read_job(Path(arguments[0])), echo=lambda text: print(text, flush=True))
    return EXIT_CODES[state]


if __name__ == "__main__":
    sys.exit(main())
