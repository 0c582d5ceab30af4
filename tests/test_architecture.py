"""The package's shape, checked on its source: one direction of imports, one owner per backend.

Stages run in this order; a module may import the shared layers (manifests, runtimes, models, the root
modules) and its own or earlier stages, never a later one. Lazy (in-function) imports count too: they are
how a cycle hides.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgeres"
STAGES = ("edgeres.train", "edgeres.importer", "edgeres.export", "edgeres.build", "edgeres.bench", "edgeres.choose", "edgeres.report")
TOP = ("edgeres.cli", "edgeres.commands", "edgeres.demo", "edgeres.__main__")  # may import every stage


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[str]:
    """edgeres modules `name` imports (top-level and in functions); `from pkg import sub` counts as pkg.sub."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in MODULES}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            subs = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
            found |= subs if subs and len(subs) == len(node.names) else ({base} & MODULES.keys()) | subs
    return found - {name}


GRAPH = {name: imports_of(name) for name in MODULES}


def stage_of(name: str) -> int | None:
    for i, stage in enumerate(STAGES):
        if name == stage or name.startswith(stage + "."):
            return i
    return None


def is_top(name: str) -> bool:
    return any(name == t or name.startswith(t + ".") for t in TOP)


def test_no_module_imports_a_later_stage():
    wrong = []
    for name, targets in GRAPH.items():
        if is_top(name):
            continue
        own = stage_of(name)
        for target in targets:
            later = stage_of(target)
            if is_top(target) or (later is not None and (own is None or later > own)):
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_no_import_cycles():
    """Tarjan's strongly connected components over the import graph: every component is one module."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component, top = set(), None
            while top != v:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
            if len(component) > 1:
                cycles.append(sorted(component))
    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []


def modules_calling(attribute: str) -> set[str]:
    """Modules whose source calls `<anything>.attribute(` or `attribute(`."""
    found = set()
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
                if called == attribute:
                    found.add(name)
    return found


def test_one_module_constructs_onnxruntime_sessions():
    assert modules_calling("InferenceSession") == {"edgeres.runtimes.ort"}


@pytest.mark.parametrize("shared", ["edgeres.manifests", "edgeres.runtimes", "edgeres.models"])
def test_shared_layers_import_no_stage(shared):
    wrong = {f"{n} -> {t}" for n, ts in GRAPH.items() if n == shared or n.startswith(shared + ".")
             for t in ts if stage_of(t) is not None or is_top(t)}
    assert wrong == set()


def test_the_checker_sees_the_graph():
    """Guard against a vacuous test: known edges are found (absolute, lazy and `from pkg import sub` forms)."""
    assert "edgeres.manifests.build" in GRAPH["edgeres.manifests.artifacts"]
    assert "edgeres.runtimes.ort" in GRAPH["edgeres.runtimes"]  # lazy, inside open_runner
    assert stage_of("edgeres.build.ort") == 3 and len(GRAPH) > 60
