"""Plugins: a user's files and modules that register scores (or tasks), imported by name from the command line.

A plugin is imported once per process; what it registers (``@register_score``, ``register_task``) is then known to
``train``, sweeps, reports and ``evaluate``. Plugins come from:

* ``--plugin PATH_OR_MODULE`` on the CLI, ``plugins:`` in a sweep file or a train preset (relative paths are
  relative to that file), or :func:`load_plugins` in Python. A spec that names a ``.py`` file or a path is imported
  from that file, under a module name made from its absolute path, so naming one file twice imports it once; any
  other spec is a dotted module name, imported with :func:`importlib.import_module`;
* the entry-point group ``adalora_scores.plugins`` (:data:`ENTRY_POINT_GROUP`) of every installed distribution,
  imported by the CLI before any command runs, or by :func:`load_entry_points`. A distribution declares one as::

      [project.entry-points."adalora_scores.plugins"]
      my_scores = "my_package.scores"

* a run folder's ``plugins.json`` (:mod:`adalora_scores.runs.plugin_record`), which ``train --resume``,
  ``evaluate``, ``export`` and ``predict`` import again.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from adalora_scores.plugins.registry import Registry

__all__ = [
    "file_sha256",
    "registered_names",
    "ENTRY_POINT_GROUP",
    "PluginChangedWarning",
    "PluginError",
    "PluginRecord",
    "load_entry_points",
    "load_plugins",
    "loaded_plugins",
    "resolve_spec",
]

ENTRY_POINT_GROUP = "adalora_scores.plugins"
FILE, MODULE, ENTRY_POINT = "file", "module", "entry_point"


class PluginError(ImportError):
    """A plugin could not be imported; the message names the plugin and the fix."""


class PluginChangedWarning(UserWarning):
    """A run's plugin file was imported again, but its content differs from when the run started."""


@dataclass(frozen=True)
class PluginRecord:
    """One imported plugin, as a run folder's ``plugins.json`` records it."""

    kind: str
    """``file``, ``module`` or ``entry_point``."""
    spec: str
    """A file's absolute path, a module's dotted name, or an entry point's ``name = value``."""
    module: str
    """The name the plugin is imported under in ``sys.modules``."""
    sha256: str | None = None
    """A file's content hash (hex)."""
    distribution: str | None = None
    """The distribution that declares an entry point."""
    scores: tuple[str, ...] = ()
    """The scores the plugin registered."""
    tasks: tuple[str, ...] = ()
    """The tasks the plugin registered."""

    def to_dict(self) -> dict[str, Any]:
        record = {key: value for key, value in asdict(self).items() if value is not None}
        return {**record, "scores": list(self.scores), "tasks": list(self.tasks)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PluginRecord:
        return cls(
            str(values["kind"]),
            str(values["spec"]),
            str(values.get("module", "")),
            values.get("sha256"),
            values.get("distribution"),
            tuple(values.get("scores") or ()),
            tuple(values.get("tasks") or ()),
        )


_loaded: dict[tuple[str, str], PluginRecord] = {}  # (kind, spec) → record, in import order
_entry_points_loaded = False


def loaded_plugins() -> list[PluginRecord]:
    """Every plugin this process has imported, in import order."""
    return list(_loaded.values())


def _is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec or spec.startswith((".", "~"))


def file_sha256(path: Path) -> str:
    """The sha256 of a file's content, in hex."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _module_name(path: Path) -> str:
    """A module name unique to the absolute path: ``adalora_scores_plugin_<stem>_<12 hex of sha1(path)>``."""
    stem = re.sub(r"\W", "_", path.stem)
    return f"adalora_scores_plugin_{stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:12]}"


def registered_names() -> dict[str, set[str]]:
    """The registered names of every registry (:meth:`Registry.all`), by kind."""
    return {kind: set(registry.names()) for kind, registry in Registry.all().items()}


@contextmanager
def _registering(
    name: str, where: str, records: list[tuple[str, str]], fix: str = "fix the plugin, or leave it out"
) -> Iterator[list[tuple[str, ...]]]:
    """Run a plugin's import: collect the scores and tasks it registers; if it raises, unregister what it registered
    (so a corrected plugin can be imported again) and raise a :class:`PluginError` that names the plugin and shows
    its error."""
    before = registered_names()
    added: list[tuple[str, ...]] = []
    try:
        yield added
    except Exception as error:
        for kind, names in registered_names().items():
            for registered in names - before.get(kind, set()):
                Registry.of(kind).unregister(registered)
        detail = f"{type(error).__name__}: {error}"
        duplicate = "already registered" in str(error)
        owner = next((spec for module, spec in records if duplicate and module and module in str(error)), None)
        if owner is not None:
            fix = f"plugin {owner} registers that name too: rename it in one of them"
        raise PluginError(f"{where} {name} failed while importing ({detail}); {fix}.") from error
    after = registered_names()
    added += [tuple(sorted(after[kind] - before[kind])) for kind in ("score", "task")]


def _load_file(path: Path, where: str) -> PluginRecord:
    if not path.is_file():
        hint = " (a folder; give the .py file inside it)" if path.is_dir() else ""
        raise FileNotFoundError(
            f"{where} {path}: no such file{hint}. Give the path of a .py file that registers a "
            "score (@register_score), or an importable module name."
        )
    module_name = _module_name(path)
    key = (FILE, str(path))
    if key in _loaded:
        return _loaded[key]
    digest = file_sha256(path)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"{where} {path} cannot be imported as Python; give a .py file.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    others = [(record.module, record.spec) for record in _loaded.values()]
    try:
        with _registering(str(path), where, others) as added:
            spec.loader.exec_module(module)
    except PluginError:
        sys.modules.pop(module_name, None)
        raise
    record = PluginRecord(FILE, str(path), module_name, sha256=digest, scores=added[0], tasks=added[1])
    _loaded[key] = record
    return record


def _load_module(name: str, where: str) -> PluginRecord:
    key = (MODULE, name)
    if key in _loaded:
        return _loaded[key]
    others = [(record.module, record.spec) for record in _loaded.values()]
    try:
        with _registering(name, where, others) as added:
            importlib.import_module(name)
    except PluginError as error:
        cause = error.__cause__
        if isinstance(cause, ModuleNotFoundError) and cause.name and (name + ".").startswith(cause.name + "."):
            raise PluginError(
                f"{where} {name}: no module named {cause.name!r}. Give the path of a .py file (e.g. "
                f"./{name.split('.')[-1]}.py), or install the package that holds the module "
                "(or add its folder to PYTHONPATH)."
            ) from None
        raise
    record = PluginRecord(MODULE, name, name, scores=added[0], tasks=added[1])
    _loaded[key] = record
    return record


def resolve_spec(spec: str | Path, base: str | Path | None = None) -> tuple[str, str]:
    """``(kind, resolved)``: a spec that ends in ``.py``, holds a path separator or starts with ``.`` or ``~`` is a
    file, returned as an absolute path (a relative one taken from ``base``, default the current folder); any other
    spec is a dotted module name, returned as given."""
    text = str(spec).strip()
    if not text:
        raise ValueError("an empty plugin name; give a .py file path or a module name.")
    if isinstance(spec, Path) or _is_path(text):
        path = Path(text).expanduser()
        if not path.is_absolute():
            path = Path(base if base is not None else Path.cwd()) / path
        return FILE, str(path.resolve())
    return MODULE, text


def load_plugins(
    specs: Sequence[str | Path], base: str | Path | None = None, where: str = "plugin"
) -> list[PluginRecord]:
    """Import every plugin of ``specs`` (a ``.py`` file path or a dotted module name each), once per process.

    Args:
        specs: the plugins, in import order.
        base: the folder relative file paths are taken from (default: the current folder); a sweep file's or a
            train preset's own folder for their ``plugins:``.
        where: how errors name the source of the spec, e.g. ``--plugin`` or ``sweep.yaml plugins:``.

    Returns:
        The record of each plugin, in the order of ``specs``.

    Raises:
        FileNotFoundError: a file spec names no file.
        PluginError: a module is not found, or the plugin raised while importing (its error is shown, e.g. a score
            name another plugin registers too).
    """
    if isinstance(specs, (str, Path)):
        specs = [specs]
    records = []
    for spec in specs:
        kind, resolved = resolve_spec(spec, base)
        records.append(_load_file(Path(resolved), where) if kind == FILE else _load_module(resolved, where))
    return records


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))


def _distribution(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(entry_point, "dist", None)
    return str(dist.metadata["Name"]) if dist is not None else "an unknown distribution"


def load_entry_points() -> list[PluginRecord]:
    """Import the plugins that installed distributions declare in the entry-point group
    ``adalora_scores.plugins`` (the entry point's module is imported; ``module:object`` loads that object too).
    Runs once per process; later calls return the same records.

    Raises:
        PluginError: an entry point failed to import; the message names the entry point and its distribution.
    """
    global _entry_points_loaded
    if _entry_points_loaded:
        return [record for record in _loaded.values() if record.kind == ENTRY_POINT]
    records = []
    for entry_point in _entry_points():
        spec, distribution = f"{entry_point.name} = {entry_point.value}", _distribution(entry_point)
        key = (ENTRY_POINT, spec)
        if key not in _loaded:
            others = [(record.module, record.spec) for record in _loaded.values()]
            name = f"{entry_point.name!r} ({entry_point.value}) of distribution {distribution!r}"
            fix = f"fix or uninstall {distribution} (pip uninstall {distribution})"
            with _registering(name, "entry point", others, fix) as added:
                entry_point.load()
            module = entry_point.value.split(":")[0].strip()
            _loaded[key] = PluginRecord(
                ENTRY_POINT, spec, module, distribution=distribution, scores=added[0], tasks=added[1]
            )
        records.append(_loaded[key])
    _entry_points_loaded = True
    return records
