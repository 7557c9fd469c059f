"""The import structure of ``app/`` and ``handlers/``: no circle anywhere (imports inside functions
count: they run too), handlers reach ``app`` only through the plugin interface, the plugin interface
imports nothing else of ``app``, and ``app`` imports no handler. Read from the source with ``ast``."""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = ("app", "handlers")
PLUGIN = "app.plugin"


def module_files(root: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``packages`` under ``root``."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> Iterable[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth (``if TYPE_CHECKING:`` blocks never do)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that importing ``name`` may run: each one named, and the packages
    above it (importing ``a.b.c`` runs ``a`` and ``a.b`` first), but not the packages ``name`` is in
    unless it names them: they have started before it."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            package = name.split(".") if is_package else name.split(".")[:-1]
            package = package[:len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            targets.add(submodule if submodule in known else base)
    own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1 + is_package)}
    reached = set(targets)
    for target in targets:  # the packages above a target run first, except those this module is in
        parts = target.split(".")
        reached.update(".".join(parts[:i]) for i in range(1, len(parts)))
    reached -= own_packages - targets
    return {module for module in reached & known if module != name}


def import_graph(root: Path, packages: Iterable[str]) -> dict[str, set[str]]:
    files = module_files(root, packages)
    return {name: imported_modules(name, path, set(files)) for name, path in files.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One example path for each strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(_cycle_through(graph, set(group)))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def _cycle_through(graph: dict[str, set[str]], group: set[str]) -> list[str]:
    """A path start -> ... -> start inside ``group``, to name the circle in a failure."""
    start = min(group)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph[node] & group):
            if nxt == start:
                return paths[node] + [start]
            if nxt not in paths:
                paths[nxt] = paths[node] + [nxt]
                frontier.append(nxt)
    return sorted(group)


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(ROOT, PACKAGES)


def test_no_import_circle_in_app_or_handlers(graph: dict[str, set[str]]) -> None:
    found = circles(graph)
    assert not found, "import circles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_handlers_reach_app_only_through_the_plugin_interface(graph: dict[str, set[str]]) -> None:
    wrong = {name: sorted(m for m in targets if m.startswith("app.") and m != PLUGIN and not m.startswith(PLUGIN + "."))
             for name, targets in graph.items() if name.split(".")[0] == "handlers"}
    assert not {k: v for k, v in wrong.items() if v}, wrong


def test_plugin_interface_imports_nothing_else_of_app(graph: dict[str, set[str]]) -> None:
    plugin = {name: targets for name, targets in graph.items() if name == PLUGIN or name.startswith(PLUGIN + ".")}
    assert plugin, "the plugin interface package is missing"
    wrong = {name: sorted(m for m in targets if m != "app" and m != PLUGIN and not m.startswith(PLUGIN + "."))
             for name, targets in plugin.items()}
    assert not {k: v for k, v in wrong.items() if v}, wrong


def test_app_imports_no_handler(graph: dict[str, set[str]]) -> None:
    wrong = {name: sorted(m for m in targets if m.split(".")[0] == "handlers")
             for name, targets in graph.items() if name.split(".")[0] == "app"}
    assert not {k: v for k, v in wrong.items() if v}, wrong


def test_the_walk_finds_circles_it_is_shown(tmp_path: Path) -> None:
    """The checks above can fail: a circle through a function-level import, a relative import and a
    package's ``__init__`` is found and named."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub import b\n")
    (pkg / "a.py").write_text("def later():\n    from pkg.sub.b import thing\n")
    (pkg / "sub" / "b.py").write_text("from .. import a\nthing = 1\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    graph = import_graph(tmp_path, ["pkg"])
    assert graph["pkg.c"] == set()  # type-only imports never run
    assert graph["pkg.sub.b"] == {"pkg.a"}  # not pkg, which started before it
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}  # pkg.sub's __init__ runs before pkg.sub.b
    found = circles(graph)
    assert len(found) == 1
    assert set(found[0]) <= {"pkg.a", "pkg.sub", "pkg.sub.b"} and found[0][0] == found[0][-1] == "pkg.a"
    assert all(after in graph[before] for before, after in zip(found[0], found[0][1:], strict=False))
