"""The package's shape: no import cycle among torchslim modules nor among its subpackages, and no
module too long to read.

The import graph is built from the source with ``ast``, so it counts every ``import`` a module can
run — at the top and inside functions (a deferred import hides a cycle from the interpreter, not
from a reader). Edges:

- ``import torchslim.a.b`` and ``from torchslim.a.b import f`` depend on ``torchslim.a.b``;
- ``from torchslim.a import b`` where ``b`` is a submodule depends on ``torchslim.a.b``; where ``b`` is
  a name defined by ``torchslim/a/__init__.py`` it depends on ``torchslim.a`` (the ``__init__``);
- a package ``__init__`` that re-exports from its modules depends on those modules.

Imports under ``if TYPE_CHECKING:`` never run and are left out. So are dynamic imports
(``importlib.import_module``): they load by name what registers itself (the public names of
``torchslim/__init__.py``, the replayers of ``core/state.py``'s ``PROVIDERS``), the way a lower layer
reaches a plugin without depending on it.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "torchslim"
MAX_LINES = 400


@dataclass
class Graph:
    """Modules by dotted name, their files, and ``edges[a][b]`` = ``file:line`` of a's first import of b."""

    files: dict[str, Path]
    packages: set[str]
    edges: dict[str, dict[str, str]] = field(default_factory=dict)


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``torchslim.a.b`` for ``<root>/a/b.py`` and for ``<root>/a/b/__init__.py``."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement in ``tree``, nested ones included, except under ``if TYPE_CHECKING``."""
    found, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            todo.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a ``from X import ...`` reads, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _targets(node: ast.Import | ast.ImportFrom, module: str, graph: Graph) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    source = _resolve_from(node, module, module in graph.packages)
    out = []
    for alias in node.names:
        submodule = f"{source}.{alias.name}"
        out.append(submodule if submodule in graph.files else source)
    return out


def build_graph(root: Path = PACKAGE) -> Graph:
    """The import graph of every module under ``root`` (edges only between torchslim modules)."""
    paths = sorted(root.rglob("*.py"))
    files = {module_name(p, root): p for p in paths}
    graph = Graph(files=files, packages={module_name(p, root) for p in paths if p.name == "__init__.py"})
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges = graph.edges.setdefault(module, {})
        for node in sorted(_imports(tree), key=lambda n: n.lineno):
            for target in _targets(node, module, graph):
                if target in files and target != module and target not in edges:
                    edges[target] = f"{path.relative_to(root.parent)}:{node.lineno}"
    return graph


def strongly_connected(edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``edges``, each sorted; iterative (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges.get(start, {}))))]
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
                    work.append((child, iter(sorted(edges.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _shortest_path(edges: dict[str, dict[str, str]], start: str, goal: str, within: set[str]) -> list[str]:
    previous: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            path = [node]
            while previous[path[-1]] is not None:
                path.append(previous[path[-1]])
            return path[::-1]
        for nxt in sorted(edges.get(node, {})):
            if nxt in within and nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"no path from {start} to {goal} inside its component")


def cycles_of(component: list[str], edges: dict[str, dict[str, str]]) -> list[list[str]]:
    """One shortest cycle through each edge of ``component``, duplicates (rotations) dropped."""
    members, seen, cycles = set(component), set(), []
    for a in component:
        for b in sorted(edges.get(a, {})):
            if b not in members:
                continue
            cycle = [a] + _shortest_path(edges, b, a, members)[:-1]
            turn = cycle.index(min(cycle))
            key = tuple(cycle[turn:] + cycle[:turn])
            if key not in seen:
                seen.add(key)
                cycles.append(list(key))
    return cycles


def describe(cycle: list[str], edges: dict[str, dict[str, str]]) -> str:
    """``a -> b (where a imports b) -> ... -> a``, one hop a line."""
    hops = zip(cycle, cycle[1:] + cycle[:1], strict=True)
    return "\n".join(f"    {a} -> {b}   ({edges[a][b]})" for a, b in hops)


def test_no_import_cycle_between_torchslim_modules():
    graph = build_graph()
    components = [c for c in strongly_connected(graph.edges) if len(c) > 1]
    report = []
    for component in components:
        report.append(f"cycle among {len(component)} modules: {', '.join(component)}")
        report.extend(describe(cycle, graph.edges) + "\n" for cycle in cycles_of(component, graph.edges))
    assert not components, "import cycles (each hop: importer -> imported (file:line)):\n" + "\n".join(report)


def subpackage(module: str) -> str:
    """The top-level part of torchslim a module belongs to: ``torchslim.a.b.c`` -> ``torchslim.a``."""
    return ".".join(module.split(".")[:2])


def subpackage_edges(graph: Graph) -> dict[str, dict[str, str]]:
    """``edges[a][b]``: the first import by a module of subpackage ``a`` of one of ``b``, as
    ``importer -> imported, file:line``."""
    edges: dict[str, dict[str, str]] = {}
    for importer, targets in sorted(graph.edges.items()):
        for imported, where in sorted(targets.items()):
            a, b = subpackage(importer), subpackage(imported)
            if a != b:
                edges.setdefault(a, {}).setdefault(b, f"{importer} -> {imported}, {where}")
    return edges


def test_no_import_cycle_between_torchslim_subpackages():
    """The packages form layers (core below models, runtime below measure, ...): a lower one never
    imports a higher one, even where no two modules import each other."""
    edges = subpackage_edges(build_graph())
    components = [c for c in strongly_connected(edges) if len(c) > 1]
    report = []
    for component in components:
        report.append(f"cycle among {len(component)} subpackages: {', '.join(component)}")
        report.extend(describe(cycle, edges) + "\n" for cycle in cycles_of(component, edges))
    assert not components, "subpackages importing each other (each hop: the first such import):\n" + "\n".join(report)


def test_no_module_is_over_the_line_limit():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, (f"modules over {MAX_LINES} lines (split them by responsibility): "
                      + ", ".join(f"{path} ({n})" for path, n in long.items()))


# -- the checker checks itself on small trees ------------------------------------------------------

def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / "torchslim" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root / "torchslim"


def _graph_of(tmp_path: Path, files: dict[str, str]) -> dict[str, set[str]]:
    return {m: set(e) for m, e in build_graph(_write(tmp_path, files)).edges.items()}


def test_graph_counts_nested_relative_and_submodule_imports(tmp_path):
    edges = _graph_of(tmp_path, {
        "__init__.py": "from torchslim.a import run\n",
        "a/__init__.py": "from .x import run\n",
        "a/x.py": "def run():\n    from ..b import y\n    return y\n",
        "b/__init__.py": "",
        "b/y.py": "from torchslim import a\nfrom torchslim.b import helper\n",
        "b/z.py": "if TYPE_CHECKING:\n    import torchslim.a.x\n",
    })
    assert edges["torchslim"] == {"torchslim.a"}  # a name defined by a/__init__: the package
    assert edges["torchslim.a"] == {"torchslim.a.x"}  # the re-export
    assert edges["torchslim.a.x"] == {"torchslim.b.y"}  # nested, relative, a submodule by name
    assert edges["torchslim.b.y"] == {"torchslim.a", "torchslim.b"}
    assert edges["torchslim.b.z"] == set()  # type-checking only


def test_subpackage_edges_join_the_imports_of_their_modules(tmp_path):
    graph = build_graph(_write(tmp_path, {
        "__init__.py": "", "a/__init__.py": "", "a/low.py": "",
        "a/high.py": "from torchslim.b.x import f\n",
        "b/__init__.py": "", "b/x.py": "from torchslim.a import low\n",
    }))
    edges = subpackage_edges(graph)
    assert {a: set(e) for a, e in edges.items()} == {"torchslim.a": {"torchslim.b"}, "torchslim.b": {"torchslim.a"}}
    assert edges["torchslim.b"]["torchslim.a"] == "torchslim.b.x -> torchslim.a.low, torchslim/b/x.py:1"
    assert [c for c in strongly_connected(edges) if len(c) > 1] == [["torchslim.a", "torchslim.b"]]
    assert all(len(c) == 1 for c in strongly_connected(graph.edges))  # no cycle between modules


def test_tarjan_finds_each_cycle_and_reports_it_as_a_chain():
    edges = {"a": {"b": "a.py:1"}, "b": {"c": "b.py:2", "d": "b.py:3"}, "c": {"a": "c.py:4"},
             "d": {"e": "d.py:1"}, "e": {"d": "e.py:9"}, "f": {"a": "f.py:1"}}
    components = sorted(c for c in strongly_connected(edges) if len(c) > 1)
    assert components == [["a", "b", "c"], ["d", "e"]]
    assert cycles_of(["a", "b", "c"], edges) == [["a", "b", "c"]]
    assert describe(["d", "e"], edges) == "    d -> e   (d.py:1)\n    e -> d   (e.py:9)"
