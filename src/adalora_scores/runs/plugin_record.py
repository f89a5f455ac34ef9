"""A run folder's ``plugins.json``: the plugins its run was trained with (each plugin's kind, its absolute path or
module name, a sha256 of a file's content, and the scores and tasks it registered), written by ``train`` and imported
again by ``train --resume``, ``evaluate``, ``export`` and ``predict``."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from adalora_scores.plugins.loading import (
    ENTRY_POINT,
    FILE,
    MODULE,
    PluginChangedWarning,
    PluginError,
    PluginRecord,
    file_sha256,
    load_entry_points,
    load_plugins,
    loaded_plugins,
    registered_names,
)
from adalora_scores.runs.atomic import read_json, write_json
from adalora_scores.runs.files import PLUGINS_FILE

__all__ = ["read_plugin_record", "restore_plugins", "write_plugin_record"]


def write_plugin_record(folder: str | Path, records: Sequence[PluginRecord] | None = None) -> None:
    """The run folder's ``plugins.json``: ``records`` (default: every plugin loaded in this process); with none, an
    earlier run's file is removed."""
    records = loaded_plugins() if records is None else list(records)
    path = Path(folder) / PLUGINS_FILE
    if records:
        write_json(path, [record.to_dict() for record in records])
    else:
        path.unlink(missing_ok=True)


def read_plugin_record(folder: str | Path) -> list[PluginRecord]:
    """The plugins a run folder records (``plugins.json``); none when it has no such file."""
    path = Path(folder) / PLUGINS_FILE
    if not path.is_file():
        return []
    try:
        return [PluginRecord.from_dict(item) for item in read_json(path)]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path} is corrupt ({type(error).__name__}: {error}); remove it and pass the run's plugins with --plugin."
        ) from None


def _missing(record: PluginRecord, folder: Path, needed: bool, reason: str, fix: str) -> None:
    names = ", ".join([*(f"score {name!r}" for name in record.scores), *(f"task {name!r}" for name in record.tasks)])
    what = f"{record.kind.replace('_', ' ')} {record.spec}" + (f" (registering {names})" if names else "")
    if needed:
        raise PluginError(f"run {folder} was trained with plugin {what}, which {reason}; {fix}.")
    warnings.warn(
        f"run {folder} recorded plugin {what}, which {reason}; this run does not use it, so it is left out.",
        PluginChangedWarning,
        stacklevel=3,
    )


def restore_plugins(folder: str | Path, score: str | None = None, task: str | None = None) -> list[PluginRecord]:
    """Import again the plugins that the run folder ``folder`` records, for ``train --resume`` and ``evaluate``.

    A plugin whose scores and tasks are all registered already (e.g. from ``--plugin NEW_PATH``) is not needed. A
    missing plugin file or module is an error when the run needs it (it registered the run's ``score`` or ``task``,
    or nothing that says otherwise), else a warning. A file whose content changed since the run started is imported
    with a :class:`PluginChangedWarning`.

    Returns:
        The records of the plugins imported (or found already imported).
    """
    folder = Path(folder)
    names = registered_names()
    records = read_plugin_record(folder)
    if any(record.kind == ENTRY_POINT for record in records):
        load_entry_points()  # once per process
    restored = []
    for record in records:
        key = (record.kind, record.spec)
        loaded_now = {(known.kind, known.spec): known for known in loaded_plugins()}
        provided = record.scores or record.tasks
        registered = set(record.scores) <= names["score"] and set(record.tasks) <= names["task"]
        if key not in loaded_now and provided and registered:
            continue  # another plugin (e.g. --plugin NEW_PATH) registers all it did
        needed = (not provided) or score in record.scores or task in record.tasks
        if record.kind == ENTRY_POINT:
            if key not in loaded_now:
                _missing(
                    record,
                    folder,
                    needed,
                    f"distribution {record.distribution} no longer declares",
                    f"install {record.distribution} again, or pass --plugin with a file that registers the same names",
                )
                continue
            restored.append(loaded_now[key])
            continue
        if record.kind == FILE and not Path(record.spec).is_file():
            _missing(record, folder, needed, "no longer exists", "pass --plugin NEW_PATH with the file's new location")
            continue
        try:
            loaded = load_plugins([Path(record.spec)] if record.kind == FILE else [record.spec], where="plugin")
        except PluginError as error:
            if record.kind == MODULE and "no module named" in str(error):
                _missing(
                    record,
                    folder,
                    needed,
                    "cannot be imported (no such module)",
                    "install it again, or pass --plugin NEW_PATH_OR_MODULE that registers the same names",
                )
                continue
            raise
        now = file_sha256(Path(record.spec)) if record.kind == FILE else None
        if record.sha256 is not None and now is not None and now != record.sha256:
            warnings.warn(
                f"plugin file {record.spec} changed since run {folder} started (sha256 {record.sha256[:12]}"
                f"… then, {now[:12]}… now); results may differ from the run's.",
                PluginChangedWarning,
                stacklevel=2,
            )
        restored.append(loaded[0])
    return restored
