"""docs/ARCHITECTURE.md's module map names every module of the packages (a package
``__init__.py`` that holds only a docstring is left out, as the map says): a new module cannot
land without a line saying what it provides."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1].parent
PACKAGES = ("pipeline", "prompts", "observability", "services", "tasks", "eval")


def only_a_docstring(path: Path) -> bool:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def test_every_module_is_in_the_module_map():
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    modules = [p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))]
    missing = [
        str(p.relative_to(REPO))
        for p in modules
        if f"`{p.relative_to(REPO)}`" not in doc
        and not (p.name == "__init__.py" and only_a_docstring(p))
    ]
    assert len(modules) > 100 and missing == []
