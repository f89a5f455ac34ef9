"""Files written whole or not at all: atomic saves under the process umask, and JSON (``.jsonl``: one object per line).

The run folder's names and formats are in :mod:`adalora_scores.runs.files`; these functions know nothing of them, so
any module can write files without importing the config.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_save", "atomic_write", "current_umask", "read_json", "write_json"]


def current_umask() -> int:
    """The process umask, read without changing it where the system says it (Linux: ``Umask:`` in
    ``/proc/self/status``); elsewhere set and restored at once (``os.umask`` has no read-only form)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_save(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Call ``write`` on a temporary file in the same folder, fsync it, then rename it over ``path``: a reader (or a
    kill) sees the old file or the new one, never half of one. The file gets an ordinary file's permissions under
    the process umask, ``0o666 & ~umask`` (``mkstemp`` creates it 0600, readable only by its owner)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def atomic_write(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_save`)."""
    atomic_save(path, lambda stream: stream.write(text.encode("utf-8")))


def write_json(path: Path, data: Any) -> None:
    """``data`` as indented JSON; for a ``.jsonl`` path, a list written one JSON object per line."""
    if path.suffix == ".jsonl":
        atomic_write(path, "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in data))
    else:
        atomic_write(path, json.dumps(data, indent=2) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
