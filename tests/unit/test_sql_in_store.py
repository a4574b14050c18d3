"""store/ owns all of taskplan's SQL: no string literal outside src/taskplan/store/ holds a SQL
statement, and nothing outside it runs one (cursor calls, `tx.all(...)` and the like).

The one exception is the SQL task executor, which runs the user's own SQL on the user's
database; its two fixed statements (`KILL QUERY` to cancel on MariaDB, `SHOW WARNINGS` to
report them) belong to running that SQL, not to taskplan's store.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "taskplan"
STORE = SRC / "store"
EXEMPT = {SRC / "executors" / "sql.py"}

SQL = re.compile(
    r"\bSELECT\b[\s\S]*\bFROM\b|\bINSERT\s+INTO\b|\bUPDATE\s+\w+\s+SET\b|\bDELETE\s+FROM\b"
    r"|\b(CREATE|ALTER|DROP)\s+(TABLE|INDEX|FUNCTION)\b|\bPRAGMA\s+\w+|\bLISTEN\s+\w+"
    r"|\bNOTIFY\s+\w+|\bpg_\w+\("
)
# A transaction's or a DBAPI connection's statement runners.
RUNNERS = {"all", "one", "scalar", "run", "many", "many_returning", "execute",
           "executemany", "exec_driver_sql"}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string nodes that are docstrings (prose may quote SQL)."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value,
                                                                        ast.Constant):
                found.add(id(body[0].value))
    return found


def sql_outside_store(path: Path, text: str) -> list[str]:
    """`file:line: what` for each SQL string or statement runner in this source."""
    tree = ast.parse(text, str(path))
    docs = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                and id(node) not in docs and SQL.search(node.value)):
            out.append(f"{path}:{node.lineno}: SQL text {node.value[:60]!r}")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in RUNNERS and isinstance(node.func.value, ast.Name)
              and node.func.value.id in ("tx", "rtx", "conn", "cur", "cursor")):
            out.append(f"{path}:{node.lineno}: runs a statement ({node.func.value.id}."
                       f"{node.func.attr})")
    return out


def test_the_detector_finds_sql_and_spares_prose() -> None:
    code = '''
"""A docstring may say SELECT x FROM y."""
QUERY = "SELECT state FROM runs WHERE id = :r"
def f(tx):
    tx.run(QUERY)
    return f"UPDATE runs SET state = {1}"
'''
    found = sql_outside_store(Path("sample.py"), code)
    assert [line.split(":")[1] for line in found] == ["3", "5", "6"], found


def test_no_sql_outside_the_store() -> None:
    files = [p for p in sorted(SRC.rglob("*.py")) if STORE not in p.parents and p not in EXEMPT]
    assert len(files) > 50  # the walk found the package
    found = [hit for p in files for hit in sql_outside_store(p, p.read_text(encoding="utf-8"))]
    assert not found, "SQL belongs in src/taskplan/store/:\n" + "\n".join(found)


@pytest.mark.parametrize("path", sorted(EXEMPT))
def test_exempt_files_still_exist(path: Path) -> None:
    # An exemption for a file that moved or went away would silently exempt nothing.
    assert path.exists()
