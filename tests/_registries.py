"""Test support: undo every plugin import of this process, as a fresh process starts."""

from __future__ import annotations

import sys

from adalora_scores.plugins import loading
from adalora_scores.plugins.registry import Registry


def forget_plugins() -> None:
    """Unregister what each loaded plugin registered, drop its module and the records of what was loaded."""
    for record in loading.loaded_plugins():
        sys.modules.pop(record.module, None)
        for kind, names in (("score", record.scores), ("task", record.tasks)):
            for name in set(names) & set(Registry.of(kind).names()):
                Registry.of(kind).unregister(name)
    loading._loaded.clear()
    loading._entry_points_loaded = False
