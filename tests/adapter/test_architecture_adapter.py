"""The library's seam, checked from the source: nothing under ``adapter/`` imports the application (the engine, the
study, the config, the CLI, the run folders, the tasks), not even for type checking, so an adapter is built from the
library's own :class:`~adalora_scores.adapter.peft.spec.AdapterSpec`."""

from __future__ import annotations

import ast
from pathlib import Path

import adalora_scores

PACKAGE = Path(adalora_scores.__file__).parent
APPLICATION = ("engine", "study", "config", "cli", "runs", "tasks")


def imported_modules(module: str, source: str) -> set[str]:
    """Every name ``module`` imports (``from X import Y``: ``X`` and ``X.Y``), at any depth and under
    ``TYPE_CHECKING`` too, relative imports made absolute."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            anchor = module.split(".")[: -node.level] if node.level else []
            base = ".".join(anchor + ([node.module] if node.module else []))
            found |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return found


def application_imports(module: str, source: str) -> list[str]:
    forbidden = [f"{PACKAGE.name}.{name}" for name in APPLICATION]
    imported = imported_modules(module, source)
    return sorted(name for name in imported if any(name == f or name.startswith(f"{f}.") for f in forbidden))


def _module(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)


def test_the_adapter_imports_nothing_of_the_application():
    files = sorted((PACKAGE / "adapter").rglob("*.py"))
    assert len(files) > 20
    found = [
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in files
        for name in application_imports(_module(path), path.read_text(encoding="utf-8"))
    ]
    assert not found, "adapter/ must build from its own settings (AdapterSpec), not the application's:\n" + "\n".join(
        found
    )


def test_the_check_sees_relative_function_level_and_type_checking_imports():
    assert application_imports("adalora_scores.adapter.peft.leak", SOURCE) == [
        "adalora_scores.config",
        "adalora_scores.config.TrainConfig",
        "adalora_scores.engine.adapter",
        "adalora_scores.engine.adapter.adapter_spec",
        "adalora_scores.runs",
        "adalora_scores.runs.files",
        "adalora_scores.tasks",
    ]


SOURCE = """
from typing import TYPE_CHECKING
from adalora_scores.allocation import layout
from adalora_scores.config_reference import x
from ...runs import files
if TYPE_CHECKING:
    from adalora_scores.config import TrainConfig
def build():
    from adalora_scores.engine.adapter import adapter_spec
    import adalora_scores.tasks
"""
