"""The package layout: no import cycles between modules, no imports hidden inside functions.

Every module of a package is found with ``pkgutil.walk_packages`` and parsed with ``ast`` (never
imported, so a cycle cannot stop the test from running). Each ``import P.x`` /
``from P.x import y`` / relative import adds edges to the module graph:

* to the module named, where ``from P.x import y`` names the submodule ``P.x.y`` when that is a
  module, else the package ``P.x`` (an import of a package depends on its ``__init__``);
* to every package above the target that is not also above the importer: importing
  ``P.models.base`` from ``P.infer.api`` runs ``P/models/__init__.py`` first, and a cycle through
  that ``__init__`` breaks the import just as well. The importer's own packages are already being
  initialized when it runs, so they add no implicit edge (else every subpackage would be a
  cycle); naming one of them (``from P import __version__``) does add the edge, since the name
  may not be defined yet.

Imports under ``if TYPE_CHECKING:`` do not run and are left out. Imports inside functions count
for cycles too, and are themselves an error: they only hide a cycle until the function runs.
"""

from __future__ import annotations

import ast
import pkgutil
from dataclasses import dataclass
from pathlib import Path

import pytest

import bayestensor


@dataclass(frozen=True)
class ImportSite:
    """One edge of an import statement: who imports what, where, and whether in a function.

    ``named`` is false for the edges to packages above the module the statement names.
    """

    importer: str
    target: str
    line: int
    in_function: bool
    named: bool = True


def package_modules(path: list[str], prefix: str) -> dict[str, Path]:
    """Module name -> source file for every module under a package, without importing modules."""
    modules = {prefix.rstrip("."): Path(path[0]) / "__init__.py"}
    for info in pkgutil.walk_packages(path, prefix):
        spec = info.module_finder.find_spec(info.name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            modules[info.name] = Path(spec.origin)
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


class _ImportVisitor(ast.NodeVisitor):
    """Collect ``(module, names, level, line, in_function)`` for every executed import."""

    def __init__(self):
        self.found: list[tuple[str, list[str], int, int, bool]] = []
        self._depth = 0

    def _function(self, node):
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If):
        if _is_type_checking(node.test):
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def visit_Import(self, node: ast.Import):
        for alias in node.names:
            self.found.append((alias.name, [], 0, node.lineno, self._depth > 0))

    def visit_ImportFrom(self, node: ast.ImportFrom):
        names = [alias.name for alias in node.names]
        self.found.append((node.module or "", names, node.level, node.lineno, self._depth > 0))


def _absolute(module: str, level: int, importer: str, is_package: bool) -> str:
    """The absolute name of a (possibly relative) import target."""
    if level == 0:
        return module
    parts = importer.split(".")
    base = parts if is_package else parts[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_sites(modules: dict[str, Path], root: str) -> list[ImportSite]:
    """Every import of a module of ``root`` by a module of ``root``, resolved to graph edges."""
    sites = []
    for importer, path in modules.items():
        visitor = _ImportVisitor()
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), str(path)))
        is_package = path.name == "__init__.py"
        for module, names, level, line, in_function in visitor.found:
            base = _absolute(module, level, importer, is_package)
            if base != root and not base.startswith(root + "."):
                continue
            targets = {f"{base}.{n}" if f"{base}.{n}" in modules else base for n in names} or {base}
            for target in sorted(targets):
                if target in modules and target != importer:
                    sites.append(ImportSite(importer, target, line, in_function))
                for name in set(_ancestors(target)) - set(_ancestors(importer)):
                    if name in modules and name != importer:
                        sites.append(ImportSite(importer, name, line, in_function, named=False))
    return sites


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (or a self-loop).

    Each cycle is a path ``[a, b, ..., a]`` through the component's first module; breaking it
    may leave another cycle in the same component, which the next run names.
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str):  # Tarjan's algorithm; the graph is far below the recursion limit
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                components.append(component)

    for node in sorted(edges):
        if node not in index:
            connect(node)
    return [_cycle_through(sorted(c), edges) for c in components]


def _cycle_through(component: list[str], edges: dict[str, set[str]]) -> list[str]:
    """A shortest cycle from the component's first module back to itself, as a path."""
    start, members = component[0], set(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for nxt in sorted(edges.get(node, ())):
                if nxt == start:
                    return paths[node] + [start]
                if nxt in members and nxt not in paths:
                    paths[nxt] = paths[node] + [nxt]
                    following.append(nxt)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def graph(sites: list[ImportSite]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for site in sites:
        edges.setdefault(site.importer, set()).add(site.target)
    return edges


@pytest.fixture(scope="module")
def package_sites() -> list[ImportSite]:
    modules = package_modules(list(bayestensor.__path__), "bayestensor.")
    assert len(modules) > 30, sorted(modules)  # the walk found the package, not an empty folder
    return import_sites(modules, "bayestensor")


def test_no_import_cycles(package_sites):
    cycles = find_cycles(graph(package_sites))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_no_function_level_imports_of_the_package(package_sites):
    hidden = sorted({f"{s.importer}:{s.line} imports {s.target}" for s in package_sites
                     if s.in_function and s.named})
    assert not hidden, "imports inside functions:\n" + "\n".join(hidden)


# The checker itself, on a small package written for the purpose.

def write_package(root: Path, files: dict[str, str]) -> None:
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")


def test_checker_finds_cycles_and_hidden_imports(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))  # walk_packages imports subpackages to list them
    write_package(tmp_path / "layout_toy", {
        "__init__.py": "from layout_toy import a\n",
        "a.py": "import layout_toy.b\n",
        "b.py": "from layout_toy.sub import c\n",  # c is a submodule: edge to sub.c (and sub)
        "sub/__init__.py": "",
        "sub/c.py": "def f():\n    from ..a import x\n",  # relative, inside a function
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import layout_toy.e\n",
        "e.py": "from layout_toy.sub import nothing_here\n",  # an attribute: edge to sub
    })
    modules = package_modules([str(tmp_path / "layout_toy")], "layout_toy.")
    assert set(modules) == {"layout_toy", "layout_toy.sub"} | {
        f"layout_toy.{name}" for name in ("a", "b", "sub.c", "d", "e")}
    sites = import_sites(modules, "layout_toy")
    edges = graph(sites)
    assert edges["layout_toy.b"] == {"layout_toy.sub", "layout_toy.sub.c"}
    assert edges["layout_toy.e"] == {"layout_toy.sub"}
    assert "layout_toy.d" not in edges
    assert find_cycles(edges) == [
        ["layout_toy.a", "layout_toy.b", "layout_toy.sub.c", "layout_toy.a"]]
    hidden = [(s.importer, s.target) for s in sites if s.in_function]
    assert hidden == [("layout_toy.sub.c", "layout_toy.a")]


def test_checker_passes_an_acyclic_package(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    write_package(tmp_path / "layout_flat", {
        "__init__.py": "from layout_flat.top import run\n",
        "top.py": "from layout_flat.low import helper\nimport layout_flat.low\n",
        "low.py": "import os\n",
    })
    modules = package_modules([str(tmp_path / "layout_flat")], "layout_flat.")
    sites = import_sites(modules, "layout_flat")
    assert find_cycles(graph(sites)) == []
    assert graph(sites)["layout_flat.top"] == {"layout_flat.low"}
