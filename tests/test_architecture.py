"""The layout keeps its promises: the engine stands alone, no import cycles, readable modules."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "agency", "webapp")
MAX_LINES = 800


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path, *, top_level_only: bool) -> set[str]:
    """Project modules a module imports (at module level, or anywhere)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _external(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_walk_finds_the_packages() -> None:
    assert {"engine.cases", "engine.cases.store", "agency.reference", "webapp.api"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("engine")))
def test_the_engine_imports_neither_flask_nor_the_web_app_nor_the_service(name: str) -> None:
    forbidden = {"flask", "flask_babel", "flask_wtf", "webapp", "agency"}
    assert not _external(MODULES[name]) & forbidden


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("agency")))
def test_the_service_never_imports_the_web_app(name: str) -> None:
    assert not _external(MODULES[name]) & {"flask", "flask_babel", "flask_wtf", "webapp"}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycles_between_modules() -> None:
    """Counting deferred imports inside functions too: a cycle hidden in a function is one."""
    graph = {name: _imports(name, path, top_level_only=False) for name, path in MODULES.items()}
    # A package's __init__ re-exporting its modules is not a dependency of those modules on it.
    for name in graph:
        graph[name] = {dep for dep in graph[name]
                       if not (dep != name and name.startswith(dep + ".")
                               and MODULES[dep].name == "__init__.py")}
    assert _cycle(graph) is None


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.split(".")[0] in ("engine",
                                                                                   "agency")))
def test_modules_can_be_read_in_a_sitting(name: str) -> None:
    lines = len(MODULES[name].read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it"
