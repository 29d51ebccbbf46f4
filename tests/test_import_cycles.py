"""No import circles among the product's modules, not even inside a package (STYLE: the shape of the house).

Every ``import`` and ``from ... import`` in a module counts, wherever it sits (module top, inside a
function, under ``if TYPE_CHECKING``): a circle closed by a function-level import is still a circle,
and would come back as soon as someone moved the import up. Imports are read with ``ast``, so
nothing is imported to check them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKED_PACKAGES = ("ingest", "storage", "analytics", "alerts", "dashboard", "forwarder", "auditwatch")


def modules(packages: Iterable[str], root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of ``packages`` (a package is its ``__init__``)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _owner(name: str, known: Mapping[str, Path]) -> str | None:
    """The known module that ``name`` lives in (``a.b.c`` may be a function of module ``a.b``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(module: str, path: Path, known: Mapping[str, Path]) -> set[str]:
    """The known modules that ``module`` imports, anywhere in its source."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else []))
            # `from a import b` imports module a.b when there is one, else a name from module a.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        out.update(owner for owner in (_owner(n, known) for n in names) if owner and owner != module)
    return out


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
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
    return sorted(found)


def import_graph(packages: Iterable[str], root: Path = ROOT) -> dict[str, set[str]]:
    known = modules(packages, root)
    return {name: imports(name, path, known) for name, path in known.items()}


def test_the_checker_finds_a_circle_closed_inside_a_function_and_through_a_relative_import(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from . import c\n")
    (pkg / "sub" / "c.py").write_text("def late():\n    from pkg.a import thing\n")
    (pkg / "d.py").write_text("import pkg.a\nfrom pkg.sub.b import name\n")
    graph = import_graph(["pkg"], tmp_path)
    assert graph["pkg.sub.b"] == {"pkg.sub.c"} and graph["pkg.d"] == {"pkg.a", "pkg.sub.b"}
    assert cycles(graph) == [["pkg.a", "pkg.sub.b", "pkg.sub.c"]]
    (pkg / "sub" / "c.py").write_text("")
    assert cycles(import_graph(["pkg"], tmp_path)) == []


def reachable(graph: Mapping[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for child in graph.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return seen


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph(CHECKED_PACKAGES)


def test_the_graph_covers_the_product(graph):
    assert {"storage.timescale.writer", "storage.timescale.sealing", "ingest.pipeline"} <= graph.keys()
    assert "storage.timescale.sealing" in graph["storage.timescale.writer"]
    assert "storage.timescale.archive" in graph["storage.timescale.verify"]


def test_sealing_writes_stay_below_the_cold_tier(graph):
    """Verification reads the archive; the write path (and the self-audit records written through it) must not,
    or the circle archive -> legal_hold -> self_audit -> writer -> ... -> archive comes back."""
    for writer in ("storage.timescale.writer", "storage.timescale.sealing", "storage.timescale.self_audit"):
        below = reachable(graph, writer)
        assert not {m for m in below if m == "storage.timescale.archive" or m.startswith("storage.cold")
                    or m == "storage.timescale.verify"}, writer


@pytest.mark.parametrize("package", CHECKED_PACKAGES)
def test_no_import_circles(graph, package):
    circles = [c for c in cycles(graph) if any(m == package or m.startswith(f"{package}.") for m in c)]
    assert circles == [], f"modules that import each other in a circle: {circles}"
