"""The run folder: what one run writes, written so that a crash never leaves a half-written file behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from adalora_scores.runs.files import ALLOCATIONS_FILE, LOG_FILE, METRICS_FILE, atomic_write, write_config, write_json

__all__ = ["RunFolder"]


class RunFolder:
    """Writes one run folder (the schema is in :mod:`adalora_scores.runs.files`).

    A run is complete once ``metrics.json`` exists. An existing non-empty folder is refused unless ``overwrite``.
    """

    def __init__(
        self, path: str | Path, overwrite: bool = False, resume_step: int | None = None, writer: bool = True
    ) -> None:
        """``resume_step``: continue a run folder, keeping the log up to that optimizer step. ``writer=False`` (the
        non-main processes of a multi-process run) checks nothing and writes nothing."""
        self.path, self.writer = Path(path), writer
        self._log = self._allocations = None
        if not writer:
            return
        self.validate(self.path, overwrite, resume_step is not None)
        self.path.mkdir(parents=True, exist_ok=True)
        (self.path / METRICS_FILE).unlink(missing_ok=True)
        self._log = self._open_log(LOG_FILE, resume_step)
        self._allocations = self._open_log(ALLOCATIONS_FILE, resume_step)

    def _open_log(self, name: str, resume_step: int | None) -> IO[str]:
        """A JSON-lines file opened for appending; on resume, cut to the records up to ``resume_step`` (records
        without a step, such as a header, are kept)."""
        path = self.path / name
        if resume_step is None:
            return path.open("w", encoding="utf-8")
        kept = []
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line).get("step", 0) <= resume_step:
                        kept.append(line)
                except (ValueError, AttributeError, TypeError):
                    break  # a line cut by the kill ends the usable log
        atomic_write(path, "".join(f"{line}\n" for line in kept))
        return path.open("a", encoding="utf-8")

    @staticmethod
    def validate(path: Path, overwrite: bool, resume: bool) -> None:
        """Raise unless ``path`` may hold this run: new or empty, or ``overwrite``/``resume`` given."""
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"--output {path} is a file; give a folder path.")
        if path.is_dir() and any(path.iterdir()) and not overwrite and not resume:
            raise FileExistsError(
                f"--output {path} already holds files; choose a new folder, pass --resume to continue this run, "
                "or --overwrite to replace it."
            )

    def write_config(self, config: dict[str, Any]) -> None:
        if self.writer:
            write_config(self.path, config)

    def log(self, record: dict[str, Any]) -> None:
        """One optimizer step's record in ``log.jsonl``."""
        if self._log is not None:
            self._log.write(json.dumps(record) + "\n")
            self._log.flush()

    def log_allocation(self, record: dict[str, Any]) -> None:
        """One record in ``allocations.jsonl`` (the matrices header, or one allocation's kept set)."""
        if self._allocations is not None:
            self._allocations.write(json.dumps(record) + "\n")
            self._allocations.flush()

    def write_json(self, name: str, data: Any) -> None:
        if self.writer:
            write_json(self.path / name, data)

    def close(self) -> None:
        for stream in (self._log, self._allocations):
            if stream is not None:
                stream.close()
