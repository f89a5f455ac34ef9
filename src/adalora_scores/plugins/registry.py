"""One registry type for everything that is chosen by name: scores, tasks and distributed backends.

A :class:`Registry` maps names to entries (a score class, a task, a backend class). Registering a name twice fails
loudly and names the entry already there; an unknown name fails with the nearest registered name (``difflib``) and
the list of the known ones. Every registry made is listed by :meth:`Registry.all`, so plugin loading can see what a
plugin registered without knowing which registries exist. The package that makes a registry and registers its
built-ins (:data:`HOMES`) is imported by name when the registry is first asked for, so a module below it in the
layers (the config, plugin loading) can ask without importing it. Nothing here imports torch.
"""

from __future__ import annotations

import difflib
import importlib
import re
from collections.abc import Callable, Iterator
from typing import ClassVar, Generic, TypeVar

__all__ = ["HOMES", "Registry", "first_sentence"]

HOMES = {"score": "adalora_scores.scores", "task": "adalora_scores.tasks"}
"""Kind → the package that makes its registry and registers the built-ins in it."""

Entry = TypeVar("Entry")


def exact(name: str) -> str:
    """The identity key: names match only when they are equal."""
    return name


def first_sentence(text: str) -> str:
    """The first sentence of a docstring's first paragraph, on one line, without reST's ``double backquotes``: up
    to the first full stop that ends the paragraph or is followed by a space and a capital letter outside
    parentheses (so "eq. 3" and "(... et al. 2018)" stay inside)."""
    paragraph = " ".join(text.strip().split("\n\n")[0].split()).replace("``", "")
    depth = 0
    for index, character in enumerate(paragraph):
        depth += {"(": 1, ")": -1}.get(character, 0)
        rest = paragraph[index + 1 :]
        if character == "." and depth <= 0 and (not rest or re.match(r" [A-Z]", rest)):
            return paragraph[: index + 1]
    return paragraph


def docstring_sentence(entry: object) -> str:
    """The first sentence of the docstring of ``entry`` (a class), or of its class."""
    return first_sentence((entry if isinstance(entry, type) else type(entry)).__doc__ or "")


class Registry(Generic[Entry]):
    """Entries by name, for one ``kind`` of thing (``"score"``, ``"task"``, ``"backend"``).

    ``key``: the function that decides when two names are the same name (default: equal strings; tasks use a
    case-, ``-``- and ``_``-insensitive key so ``SST-2`` finds ``sst2``). ``describe``: an entry's one-line
    description, for listings (default: the first sentence of its docstring). ``known``: the words before the list
    of names in an unknown-name error (default ``"Registered <kind>s"``).
    """

    _all: ClassVar[dict[str, Registry]] = {}

    def __init__(
        self,
        kind: str,
        key: Callable[[str], str] = exact,
        describe: Callable[[Entry], str] = docstring_sentence,
        known: str | None = None,
    ) -> None:
        if kind in Registry._all:
            raise ValueError(f"a registry of {kind}s already exists; use adalora_scores.plugins.registry.Registry.of")
        self.kind = kind
        self._key = key
        self._describe = describe
        self._known = known or f"Registered {kind}s"
        self._entries: dict[str, Entry] = {}
        Registry._all[kind] = self

    @classmethod
    def all(cls) -> dict[str, Registry]:
        """Every registry, by kind (the packages of :data:`HOMES` imported first)."""
        for kind in HOMES:
            cls.of(kind)
        return dict(cls._all)

    @classmethod
    def of(cls, kind: str) -> Registry:
        """The registry of ``kind``, its home package (:data:`HOMES`) imported first where it is not yet."""
        if kind not in cls._all and kind in HOMES:
            importlib.import_module(HOMES[kind])
        return cls._all[kind]

    def register(self, name: str, entry: Entry) -> Entry:
        """Add ``entry`` under ``name`` and return it; a name already registered (by this registry's key) raises a
        ValueError that names the entry already there."""
        clash = self.find(name)
        if clash is not None:
            raise ValueError(
                f"a {self.kind} named {clash!r} is already registered ({_origin(self._entries[clash])}); choose "
                "another name."
            )
        self._entries[name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove ``name`` (plugin loading undoes a failed plugin's registrations; tests undo their own)."""
        del self._entries[name]

    def find(self, name: str) -> str | None:
        """The registered name that is the same name as ``name``, or None."""
        wanted = self._key(str(name))
        return next((known for known in self._entries if self._key(known) == wanted), None)

    def get(self, name: str) -> Entry:
        """The entry registered as ``name``; an unknown name raises a KeyError with the nearest known name."""
        found = self.find(name)
        if found is not None:
            return self._entries[found]
        lowered = {known.lower(): known for known in self._entries}
        close = difflib.get_close_matches(str(name).lower(), list(lowered), n=1)
        hint = f" Did you mean {lowered[close[0]]!r}?" if close else ""
        raise KeyError(f"unknown {self.kind} {name!r}.{hint} {self._known}: {', '.join(self.names())}.")

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def describe(self, name: str) -> str:
        """The one-line description of ``name``'s entry."""
        return self._describe(self.get(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.find(name) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def _origin(entry: object) -> str:
    """Where an entry comes from: ``module.QualifiedName`` for a class, else its repr."""
    if isinstance(entry, type):
        return f"{entry.__module__}.{entry.__qualname__}"
    return repr(entry)
