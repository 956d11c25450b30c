"""The shape of the library: layers that import only downwards, no import cycle, CPU-only rules free of
torch, and the results layout defined in one place."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_workflow import ROOT

PACKAGE = ROOT / "workflow" / "scripts" / "w2s"
# What each layer may import from the others. Top-level modules (atomic, layout, scoring, config) sit
# below every subpackage, except config, which checks config entries against the task registry and the
# intervention cells.
ALLOWED = {
    "data": set(),
    "labels": {"data"},
    "engine": set(),
    "execution": set(),
    "stages": {"data", "labels", "engine", "execution", "analysis"},
    "analysis": {"labels"},
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The w2s modules a file imports, at any depth of its code (lazy imports count too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("w2s")}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("w2s"):
            found.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            package = module_name(path).split(".")
            if path.name != "__init__.py":
                package = package[:-1]
            found.add(".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])))
    return found


GRAPH = {module_name(p): imports_of(p) for p in PACKAGE.rglob("*.py")}


def layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED) else None


def test_layers_import_only_what_they_may():
    wrong = []
    for module, imported in GRAPH.items():
        own = layer(module)
        for target in imported:
            other = layer(target)
            if own is None and other is not None and module != "w2s.config":
                wrong.append(f"{module} (base) imports {target}")
            elif own and other and other != own and other not in ALLOWED[own]:
                wrong.append(f"{module} ({own}) imports {target} ({other})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    known = {m for m in GRAPH}

    def resolve(target: str) -> str | None:
        # `from w2s.x import name` may name a module or a function; the module is the longest known prefix.
        while target and target not in known:
            target = target.rpartition(".")[0]
        return target or None

    edges = {m: {t for t in map(resolve, imported) if t and t != m} for m, imported in GRAPH.items()}
    state: dict[str, int] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for nxt in edges[module]:
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " -> ".join(path[path.index(nxt) :] + [module, nxt]))
            if nxt not in state:
                visit(nxt, path + [module])
        state[module] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [])


CPU_ONLY = [
    "w2s.stages.data",
    "w2s.stages.labels",
    "w2s.stages.analysis",
    "w2s.execution.rules",
    "w2s.config",
    "w2s.layout",
    "w2s.analysis.report",
    "w2s.data.materialize",
]


def test_cpu_only_rules_import_no_torch():
    """What the CPU-only rule scripts import leaves torch, transformers and accelerate unloaded: those
    rules start in a fraction of a second and run where torch is broken or absent."""
    code = (
        f"import sys, importlib\nfor m in {CPU_ONLY!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'accelerate') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PACKAGE.parent, check=True)
    assert proc.stdout.strip() == "[]"


def test_rules_build_results_paths_through_the_layout_only():
    sources = [ROOT / "Snakefile", *sorted((ROOT / "workflow" / "rules").glob("*.smk"))]
    literal = [
        f"{p.name}:{i}"
        for p in sources
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if '"results/' in line or '"resources/' in line
    ]
    assert not literal, f"results paths written out instead of taken from w2s.layout: {literal}"
