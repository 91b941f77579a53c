"""The package's shape: imports point down the layers without cycles, small modules, no CLI in the library.

Layers (docs/architecture.md): cli -> api/runners -> search -> spaces/train -> nets ->
arch/ops -> utils. Function-level (lazy) imports count too: a lazy import that points back
up is still a cycle in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "nasforge"
LIBRARY = ("search", "spaces", "nets", "arch", "train")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(SRC.rglob("*.py")):
        rel = p.relative_to(SRC.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """The nasforge modules (and other top-level packages) that ``path`` imports anywhere in it."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                if sub in MODULES:
                    out.add(sub)
    return out


def _graph() -> dict[str, set[str]]:
    g = {}
    for name, path in MODULES.items():
        deps = set()
        for imp in _imports(path):
            if imp in MODULES and imp != name:
                # importing a package's submodule runs the package first; a package's __init__
                # importing its own submodules is not a cycle of the design
                deps.add(imp)
        g[name] = deps
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in g:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    g = _graph()
    # a package importing its own submodules (re-exports) is fine; drop package -> own child edges
    for name, deps in g.items():
        g[name] = {d for d in deps if not (d.startswith(name + ".") and MODULES[name].name == "__init__.py")}
    assert _cycles(g) == []


@pytest.mark.parametrize("layer", LIBRARY)
def test_library_layers_parse_no_arguments_and_never_import_the_cli(layer):
    offenders = []
    for name, path in MODULES.items():
        if not name.startswith(f"nasforge.{layer}"):
            continue
        imports = _imports(path)
        bad = sorted(i for i in imports if i == "argparse" or i == "nasforge.cli" or i.startswith("nasforge.cli."))
        if bad:
            offenders.append(f"{name}: {bad}")
    assert offenders == []


def test_library_layers_do_not_print():
    offenders = []
    for name, path in MODULES.items():
        if not any(name.startswith(f"nasforge.{layer}") for layer in LIBRARY):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                offenders.append(f"{name}:{node.lineno}")
            if isinstance(node, ast.Name) and node.id == "print":  # print as a default callback counts too
                offenders.append(f"{name}:{node.lineno}")
    assert offenders == []


def test_no_module_over_400_lines():
    long = {name: n for name, p in MODULES.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
