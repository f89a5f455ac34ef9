"""The architecture, checked from the source: no import circles, DeepSpeed and FSDP known in one package only, the
adapter's three concerns as folders, and a training entry point that reads on one screen."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import adalora_scores

PACKAGE = Path(adalora_scores.__file__).parent
NAME = PACKAGE.name


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """The ids of import nodes under ``if TYPE_CHECKING:`` (not executed at run time)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(child) for child in ast.walk(node) if isinstance(child, ast.Import | ast.ImportFrom)}
    return skipped


def _imported_modules(module: str, path: Path) -> set[str]:
    """The package's modules that ``module`` imports at run time, at any depth of its code (function-level imports
    count: they close a circle as surely, only later). ``from X import Y`` is an edge to ``X.Y`` when that is a
    module, else to ``X``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = _type_checking_only(tree)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {name for name in found if name in MODULES and name != module}


def import_graph() -> dict[str, set[str]]:
    return {module: _imported_modules(module, path) for module, path in MODULES.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_finds_a_circle_and_only_circles():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set(), "c": {"b"}}) == []


def test_the_graph_sees_function_level_and_relative_imports_but_not_type_checking_ones(tmp_path):
    graph = import_graph()
    assert f"{NAME}.adapter.peft.attach" in graph[f"{NAME}.adapter.peft.build"]
    assert f"{NAME}.allocation.layout" not in graph[f"{NAME}.scores.controls"]  # under TYPE_CHECKING
    assert sum(len(targets) for targets in graph.values()) > 200


def test_the_package_has_no_import_circles():
    found = circles(import_graph())
    assert not found, "import circles (break each by moving the shared piece down a layer):\n" + "\n".join(
        " -> ".join(circle) for circle in found
    )


def package_of(module: str) -> str:
    """The package a module belongs to: ``adalora_scores.X`` for a module anywhere in the folder X; the root package
    and its own modules (``adalora_scores.config``) are their own packages."""
    return ".".join(module.split(".")[:2])


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """Package P → package Q when a module of P imports a module of Q at run time."""
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        source = package_of(module)
        packages.setdefault(source, set()).update(package_of(target) for target in targets)
        packages[source].discard(source)
    return packages


PACKAGE_CIRCLES_ELSEWHERE: list[list[str]] = []
"""Package circles known and left to the package that owns them, each as ``circles`` writes it; empty it as they
are broken."""


def test_the_package_graph_collapses_modules_into_their_packages():
    graph = {"p.a.x": {"p.b.y", "p.a.z"}, "p.b.y": {"p.config"}, "p.config": set(), "p.a.z": set()}
    assert package_graph(graph) == {"p.a": {"p.b"}, "p.b": {"p.config"}, "p.config": set()}
    assert circles(package_graph({**graph, "p.config": {"p.a.z"}})) == [["p.a", "p.b", "p.config"]]


def test_the_packages_have_no_import_circles():
    """A circle of packages is a circle of layers even where no module circle closes: the package that owns the
    shared piece is the lower layer, and the others import it, never the reverse."""
    graph = import_graph()
    found = [circle for circle in circles(package_graph(graph)) if circle not in PACKAGE_CIRCLES_ELSEWHERE]
    edges = [
        f"  {module} -> {target}"
        for circle in found
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if package_of(module) != package_of(target) and {package_of(module), package_of(target)} <= set(circle)
    ]
    assert not found, (
        "package import circles (move the shared piece into the lower package):\n"
        + "\n".join(" <-> ".join(circle) for circle in found)
        + "\nthe imports between their packages:\n"
        + "\n".join(edges)
    )


# -- DeepSpeed and FSDP in one package --------------------------------------------------------------------------------
DISTRIBUTED = PACKAGE / "adapter" / "distributed"
DISTRIBUTED_WORDS = re.compile(r"deepspeed|(?<![A-Za-z0-9])ds_|DTensor|full_tensor", re.IGNORECASE)


def _code_words(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every identifier, attribute, imported name and non-docstring string constant: what the
    code uses, not what its comments and docstrings explain."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    words = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            words.append((node.lineno, node.id))
        elif isinstance(node, ast.Attribute):
            words.append((node.lineno, node.attr))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
            words += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words.append((node.lineno, node.value))
    return words


def _distributed_knowledge(path: Path) -> list[tuple[int, str]]:
    """The code words of ``path`` that know DeepSpeed or FSDP; a user-facing message may name DeepSpeed."""
    hits = set()
    for line, text in _code_words(path):
        if (match := DISTRIBUTED_WORDS.search(text)) and not (
            match.group(0).lower() == "deepspeed" and " " in text and "import" not in text
        ):
            hits.add((line, text))
    return sorted(hits)


def test_deepspeed_and_fsdp_are_known_in_adapter_distributed_only():
    outside = [path for path in PACKAGE.rglob("*.py") if DISTRIBUTED not in path.parents]
    found = [
        f"{path.relative_to(PACKAGE)}:{line}: {text[:60]!r}"
        for path in outside
        for line, text in _distributed_knowledge(path)
    ]
    assert not found, "move this to adalora_scores/adapter/distributed/ (the backend):\n" + "\n".join(found)


def test_the_distributed_check_catches_what_it_should(tmp_path):
    leak = tmp_path / "leak.py"
    leak.write_text(
        '"""Docstrings may explain DeepSpeed and ds_shape."""\n'
        "import deepspeed\n"
        "size = getattr(p, 'ds_numel', 0)\n"
        "full = p.full_tensor()\n"
        "mesh = p.DTensor\n"
        "needs_fan_in, seeds_needed = 1, 2\n"
        "print('under DeepSpeed the engine refuses this')\n"
    )
    assert [text for _, text in _distributed_knowledge(leak)] == ["deepspeed", "ds_numel", "full_tensor", "DTensor"]


# -- the adapter's three concerns ------------------------------------------------------------------------------------
@pytest.mark.parametrize("concern", ["peft", "per_example", "distributed"])
def test_the_adapter_shows_its_concerns_as_folders_whose_init_only_re_exports(concern):
    init = PACKAGE / "adapter" / concern / "__init__.py"
    tree = ast.parse(init.read_text(encoding="utf-8"))
    body = tree.body[1:] if ast.get_docstring(tree) else tree.body
    for node in body:
        is_all = isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["__all__"]
        assert isinstance(node, ast.ImportFrom) or is_all, f"{init}: {ast.unparse(node)[:80]}"
    assert [p.name for p in (PACKAGE / "adapter").glob("*.py")] == ["__init__.py"]


# -- the training entry point ----------------------------------------------------------------------------------------
def _function(path: Path, name: str) -> ast.FunctionDef:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return next(node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == name)


def test_train_reads_as_prepare_train_steps_finish_on_one_screen():
    path = PACKAGE / "engine" / "train.py"
    train = _function(path, "train")
    calls = [ast.unparse(node.func) for node in ast.walk(train) if isinstance(node, ast.Call)]
    assert [call for call in calls if call in ("prepare", "train_steps", "finish")] == [
        "prepare",
        "train_steps",
        "finish",
    ]
    assert train.end_lineno - train.lineno + 1 <= 15
    stages = [_function(path, name) for name in ("prepare", "train_steps", "finish")]
    assert all(stage.end_lineno - stage.lineno + 1 <= 40 for stage in stages)
