"""The package's layout is part of its design (docs/architecture.md): no import cycles between its
parts, not even imports hidden inside functions, and the product never imports the development
tools (`dag_factory.dev`) that Airflow images do not need."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

PACKAGE = ROOT / "dag_factory"


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Every dag_factory module `path` imports, at the top or inside a function."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        out.update(n for n in names if n in modules)
    return out


def _part(module: str) -> str:
    """`dag_factory.live.sync` -> `dag_factory.live`: the unit the layout is drawn in."""
    return ".".join(module.split(".")[:2])


def _part_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        for target in _imports(path, modules):
            if _part(target) != _part(name) and target != "dag_factory":
                graph.setdefault(_part(name), set()).add(_part(target))
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, stack = set(), [start]
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def test_no_import_cycle_between_the_parts_of_the_package():
    graph = _part_graph()
    cycles = sorted({tuple(sorted((a, b))) for a, targets in graph.items() for b in targets if _reaches(graph, b, a)})
    assert not cycles, f"import cycles between parts of dag_factory: {cycles}"


def test_the_product_never_imports_the_development_tools():
    graph = _part_graph()
    product = [p for p in graph if p not in ("dag_factory.dev", "dag_factory.cli")]
    offenders = sorted(p for p in product if _reaches(graph, p, "dag_factory.dev"))
    assert not offenders, f"{offenders} import dag_factory.dev: the development tools must stay at the edge"


def test_building_dags_imports_nothing_of_the_development_tools(tmp_path):
    code = ("import sys, dag_factory.builders.register, dag_factory.builders.sync_dag, dag_factory.runtime.streaming;"
            "print(sorted(m for m in sys.modules if m.startswith('dag_factory.dev') or m.startswith('fastapi')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
