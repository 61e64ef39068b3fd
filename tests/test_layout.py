"""The package's shape: imports run one way, modules stay small, engines are named only where they live."""

import ast
import re
from pathlib import Path

from bench.config import REPO_DIR

PACKAGE = REPO_DIR / "bench"
MAX_LINES = 350  # what one reader holds in mind; split by responsibility, never to get under it


def _module(path: Path) -> str:
    parts = path.relative_to(REPO_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every bench module and the bench modules it imports, at the top or inside a function."""
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    # a package imports its modules through __init__: that is not a circle of code
    graph = {m: {t for t in ts if not (m.startswith(t + ".") or t.startswith(m + "."))} for m, ts in _imports().items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_one():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_over_300_lines():
    long = {
        str(p.relative_to(REPO_DIR)): n
        for p in PACKAGE.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def _string_literals(tree: ast.AST):
    """Every string constant in the code, docstrings left out (prose may name an engine)."""
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            yield node


def test_no_engine_name_is_tested_outside_engines():
    """The commands that plan and read runs ask an engine what it can do; they never pick one by name."""
    from bench.engines import engine_names

    names = re.compile(r"\b(" + "|".join(engine_names()) + r")\b")
    outside = {}
    for path in PACKAGE.rglob("*.py"):
        if PACKAGE / "engines" in path.parents:
            continue
        hits = [node.lineno for node in _string_literals(ast.parse(path.read_text())) if names.search(node.value)]
        if hits:
            outside[str(path.relative_to(REPO_DIR))] = hits
    assert outside == {}
