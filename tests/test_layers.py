"""The shape of the code: imports flow one way (zoo -> bench -> reports -> cli) and never in a cycle, function-local
imports included; and in bench and reports only the engine table and the engines' own modules name a framework."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"zoo": 0, "bench": 1, "reports": 2, "cli": 3}
FRAMEWORK_WORDS = frozenset({"torch", "tf", "tensorflow", "keras", "pytorch", "jax"})


def engine_modules() -> frozenset[str]:
    """The engine table and the modules it names (backends, input pipelines, launcher programs): the only places
    in bench and reports that may name a framework."""
    from bench.engines import ENGINES

    named = {reference.split(":")[0] for engine in ENGINES.values()
             for reference in (engine.backend, engine.pipeline) if reference}
    named |= {engine.data_parallel.program[-1] for engine in ENGINES.values()
              if getattr(engine.data_parallel, "program", None)}
    return frozenset({"bench/engines.py", *(name.replace(".", "/") + ".py" for name in named)})


def modules(root: Path) -> dict[str, Path]:
    found = {"cli": root / "cli.py"} if (root / "cli.py").exists() else {}
    for package in ("zoo", "bench", "reports"):
        for path in (root / package).rglob("*.py"):
            found[".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")] = path
    return found


def import_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the project's modules it imports anywhere in its body (``from a import b`` counts as importing
    ``a.b`` where that is a module)."""
    graph: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for target in targets:
                while target and target not in found:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    graph[name].add(target)
    return graph


def climbing(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets
                  if LAYERS[a.split(".")[0]] < LAYERS[b.split(".")[0]])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
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
    return found


def framework_names(path: Path) -> list[str]:
    """Where a module's code (not its docstrings or comments) imports or names a framework."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    named = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            words = {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            words = {(node.module or "").split(".")[0]}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            words = set(node.value.replace(".", " ").replace(":", " ").replace("(", " ").split())
        else:
            continue
        if words & FRAMEWORK_WORDS:
            named.append(f"line {node.lineno}: {', '.join(sorted(words & FRAMEWORK_WORDS))}")
    return named


def test_imports_flow_one_way_and_never_in_a_cycle():
    graph = import_graph(modules(REPO))
    assert climbing(graph) == []
    assert cycles(graph) == []


def test_only_the_engine_table_and_the_engines_name_a_framework_in_bench_and_reports():
    assert {"bench/torch_backend.py", "bench/tf_backend.py", "bench/torch_launcher.py"} <= engine_modules()
    offenders = {str(path.relative_to(REPO)): framework_names(path)
                 for package in ("bench", "reports") for path in sorted((REPO / package).rglob("*.py"))
                 if str(path.relative_to(REPO)) not in engine_modules()}
    assert {path: named for path, named in offenders.items() if named} == {}


def test_the_checks_find_a_climbing_import_a_cycle_and_a_framework_named(tmp_path):
    for package in ("zoo", "bench", "reports"):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / "bench" / "a.py").write_text("def f():\n    from reports import view\n")
    (tmp_path / "reports" / "view.py").write_text("from bench.b import g\n")
    (tmp_path / "bench" / "b.py").write_text("from bench.a import f\nSTEP = 'torch.compile'\n")
    (tmp_path / "bench" / "c.py").write_text('"""Runs on torch."""\n# tf would do too\n')
    graph = import_graph(modules(tmp_path))
    assert climbing(graph) == ["bench.a -> reports", "bench.a -> reports.view"]
    assert cycles(graph) == [["bench.a", "bench.b", "reports.view"]]
    assert framework_names(tmp_path / "bench" / "b.py") == ["line 2: torch"]
    assert framework_names(tmp_path / "bench" / "c.py") == []  # a docstring or a comment may say it
