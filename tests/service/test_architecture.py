"""The shape of the code, checked: no import cycles, tasks that resolve, an HTTP side that never
imports the numerical frameworks."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import labcrunch_service
from labcrunch_service.app import create_app
from labcrunch_service.compute import Task

SERVICE = Path(labcrunch_service.__file__).parent
PACKAGE = "labcrunch_service"
FRAMEWORKS = ("jax", "jaxlib", "tensorflow", "pyhf", "optax", "scipy", "iminuit")


def _module_name(path: Path) -> str:
    parts = path.relative_to(SERVICE).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join((PACKAGE, *parts))


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks (never run)."""
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def import_graph() -> dict[str, set[str]]:
    """Module → the labcrunch_service modules it imports, at any level of the file (a
    function-level import still makes a cycle), except under TYPE_CHECKING."""
    modules = {_module_name(p): p for p in SERVICE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        skipped = _type_checking_nodes(tree)
        edges = set()
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            if isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for alias in node.names:
                    submodule = f"{node.module}.{alias.name}"
                    edges.add(submodule if submodule in modules else node.module)
        graph[name] = {e for e in edges if e in modules and e != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_hidden_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_service_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30 and graph["labcrunch_service.app"]  # the graph was really read
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_every_task_resolves_to_a_function():
    create_app()  # imports every router, which makes the tasks
    paths = {task.path for task in Task.made}
    assert len(paths) >= 10
    for task in Task.made:
        assert callable(task.resolve()), task.path


def test_the_http_side_imports_no_numerical_framework():
    """Building the app (every router, schema and limit check) leaves JAX, TensorFlow and pyhf
    to the processes that compute."""
    script = ("import sys; from labcrunch_service.app import create_app; create_app(); "
              f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
