"""core/ never imports gradio; studio/ never imports torch (the UI reaches models only through core)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(folder: Path):
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield path, node.module.split(".")[0]


def test_core_does_not_import_gradio():
    offenders = [str(p) for p, m in imported_modules(ROOT / "core") if m == "gradio"]
    assert offenders == []


def test_studio_does_not_import_torch():
    if not (ROOT / "studio").exists():
        return
    offenders = [str(p) for p, m in imported_modules(ROOT / "studio") if m in ("torch", "diffusers")]
    assert offenders == []
