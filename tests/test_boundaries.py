"""The architecture's boundaries, followed through indirect imports.

- importing every ``core`` module never loads gradio (core is usable without the UI);
- importing every ``studio`` module never loads torch or diffusers (the UI reaches models only
  through core's lazy entry points);
- the ``core`` modules import each other without cycles.

The first two run in a fresh interpreter, so modules loaded by other tests do not count and an
import reached through any chain of modules does.
"""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import networkx as nx

from tests.conftest import ROOT

# Imports every module of a package (walking subpackages, skipping ``__main__`` entry points) and
# prints, as one line each, the heavy top-level packages that ended up in sys.modules.
LOADED_AFTER_IMPORTING = textwrap.dedent(
    """
    import importlib, pkgutil, sys
    package, watched = sys.argv[1], sys.argv[2:]
    root = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, package + ".") if not m.name.endswith("__main__")]
    for name in names:
        importlib.import_module(name)
    print(len(names))
    for top in watched:
        if top in sys.modules:
            print(top)
    """
)


def heavy_modules_loaded(package: str, watched: list[str]) -> tuple[int, list[str]]:
    """(number of modules imported, the ``watched`` top-level packages they loaded) in a fresh interpreter."""
    done = subprocess.run(
        [sys.executable, "-c", LOADED_AFTER_IMPORTING, package, *watched],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    count, *loaded = done.stdout.split()
    return int(count), loaded


def test_importing_all_of_core_never_loads_gradio():
    count, loaded = heavy_modules_loaded("core", ["gradio"])
    assert count > 10  # the walk really found the package's modules
    assert loaded == []


def test_importing_all_of_studio_never_loads_torch_or_diffusers():
    count, loaded = heavy_modules_loaded("studio", ["torch", "diffusers"])
    assert count > 3
    assert loaded == []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def in_type_checking_block(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def core_import_graph() -> nx.DiGraph:
    """Edges ``a -> b`` for every ``core`` module ``a`` that imports ``core`` module ``b``.

    Imports inside functions count (a lazy import still ties the two modules together); imports
    under ``if TYPE_CHECKING:`` do not (they never run). ``from core.x import y`` points at
    ``core.x.y`` when that is a module, else at ``core.x``.
    """
    paths = {module_name(p): p for p in (ROOT / "core").rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(paths)
    for name, path in paths.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in paths else base for alias in node.names]
            else:
                continue
            if in_type_checking_block(node, parents):
                continue
            for target in targets:
                # ``import core.a.b`` names core.a.b; keep the longest prefix that is a core module.
                while target and target not in paths:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph.add_edge(name, target)
    return graph


def test_the_import_graph_sees_core_modules():
    graph = core_import_graph()
    assert graph.number_of_edges() > 10
    assert graph.has_edge("core.render", "core.plan") or any(n.startswith("core.plan.") for n in graph.successors("core.render"))


def import_cycles(graph: nx.DiGraph) -> list[list[str]]:
    return sorted(sorted(cycle) for cycle in nx.simple_cycles(graph))


def test_core_modules_have_no_import_cycles():
    assert import_cycles(core_import_graph()) == []


def test_the_studio_does_not_import_the_command_line():
    # The studio shares settings with the CLI through core.settings, not by importing core.cli.
    count, loaded = heavy_modules_loaded("studio", ["core.cli", "core.batch"])
    assert count > 5 and loaded == []
