"""A module's `_private` names are its own: no other module of taskplan imports one or reaches
for one through the module (`ops._thing`). What two modules share is public and named so."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "taskplan"


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def private_uses(path: Path, text: str) -> list[str]:
    tree = ast.parse(text, str(path))
    modules: set[str] = set()  # local names bound to taskplan modules
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("taskplan"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{path}:{node.lineno}: imports {node.module}.{alias.name}")
                elif _is_module(f"{node.module}.{alias.name}"):
                    modules.add(alias.asname or alias.name)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("taskplan") and alias.asname:
                    modules.add(alias.asname)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append(f"{path}:{node.lineno}: uses {node.value.id}.{node.attr}")
    return found


def test_the_check_sees_both_forms() -> None:
    code = ("from taskplan.store.ops import _hidden\nfrom taskplan.store import ops\n"
            "ops._other(1)\n")
    assert [f.split(":")[1] for f in private_uses(Path("x.py"), code)] == ["1", "3"]


def test_no_module_uses_another_modules_private_names() -> None:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    found = [hit for p in files for hit in private_uses(p, p.read_text(encoding="utf-8"))]
    assert not found, "\n".join(found)
