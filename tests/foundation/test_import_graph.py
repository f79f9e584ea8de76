"""No import cycles: the graph of module-level imports between our modules is acyclic.

Importing every module alone in a fresh interpreter would find only the cycles that
happen to break for that entry point, at about half a second a module.  Instead this
reads every module's source with :mod:`ast` and builds the graph of what runs at import
time:

- only statements that execute when the module is imported count: the module body,
  ``if``/``try``/``with`` blocks and class bodies, but not function bodies (a lazy
  import) nor ``if TYPE_CHECKING:`` blocks;
- relative imports are resolved against the importing module;
- ``import a.b.c`` and ``from a.b.c import x`` depend on ``a.b.c`` and on the package
  ``__init__`` modules above it (they run first), except the importing module's own
  ancestors, which are already in ``sys.modules`` when it runs;
- ``from pkg import name`` depends on ``pkg.name`` when that is a module, else on
  ``pkg/__init__`` itself (a re-export: the name exists only once ``__init__`` has run
  far enough), even when ``pkg`` is an ancestor of the importing module.

A cycle in this graph is an import whose success depends on which module is imported
first.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["edgenode", "ledger", "federated", "simnet"]


def _modules() -> dict[str, Path]:
    """Every module of :data:`PACKAGES`, by dotted name (a package by its own name)."""
    found: dict[str, Path] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_time_statements(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of ``body`` that run when the module is imported."""
    out: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                out += _import_time_statements(node.body)
            out += _import_time_statements(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)):
                out += _import_time_statements(block)
        elif isinstance(node, (ast.With, ast.ClassDef)):
            out += _import_time_statements(node.body)
    return out


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that importing ``name`` executes directly."""
    is_pkg = path.name == "__init__.py"
    own = {name, *_ancestors(name)}
    deps: set[str] = set()

    def needs(target: str) -> None:
        # ``target`` and the packages above it, except those already running above us.
        for mod in (*_ancestors(target), target):
            if mod in modules and mod not in own:
                deps.add(mod)

    tree = ast.parse(path.read_text(), filename=str(path))
    for stmt in _import_time_statements(tree.body):
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                needs(alias.name)
            continue
        if stmt.level:
            base = name.split(".") if is_pkg else name.split(".")[:-1]
            base = base[: len(base) - (stmt.level - 1)]
            source = ".".join([*base, *([stmt.module] if stmt.module else [])])
        else:
            source = stmt.module or ""
        if source.split(".")[0] not in PACKAGES:
            continue
        needs(source)
        for alias in stmt.names:
            sub = f"{source}.{alias.name}"
            if sub in modules:
                needs(sub)
            elif source in modules and source != name:
                deps.add(source)  # a name re-exported by (or defined in) ``source``
    return deps


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp: list[str] = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in graph[v]:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_one_cycle(graph, set(comp)) for comp in components]


def _one_cycle(graph: dict[str, set[str]], comp: set[str]) -> list[str]:
    """A shortest cycle through the first module of ``comp`` (BFS inside the component)."""
    start = min(comp)
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt: list[str] = []
        for v in frontier:
            for w in sorted(graph[v] & comp):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parent[path[-1]])
                    return [*reversed(path), start]
                if w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start}")


def test_graph_sees_the_packages() -> None:
    graph = import_graph()
    assert {"edgenode", "edgenode.net._transport", "ledger", "federated", "simnet.cli"} <= set(graph)
    assert "edgenode.errors" in graph["edgenode.net._transport"]  # a relative import, resolved


def test_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(graph) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_import_graph_is_acyclic() -> None:
    cycles = find_cycles(import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)
