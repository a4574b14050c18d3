"""Create a new SQLite store in one step from the schema the migrations build, and stamp it.

Replaying every Alembic migration on a new file costs about a second (importing SQLAlchemy and
Alembic, then one batch table rebuild after another); a user's first `taskplan run` pays it.
Instead, `fresh_sqlite.sql` holds the exact DDL that the migrations leave in `sqlite_master`,
rendered by `python -m taskplan.store.fresh` and checked by a test against a real migration
run. A store that exists already (any table in it) always goes through Alembic, and so does a
new one whenever the rendered file is not at the current HEAD.
"""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from taskplan.store import migrate

FRESH_SQLITE = Path(__file__).parent / "sql" / "fresh_sqlite.sql"
_REVISION_LINE = "-- revision: "


def rendered_revision(text: str) -> str | None:
    first = text.split("\n", 1)[0]
    return first[len(_REVISION_LINE):].strip() if first.startswith(_REVISION_LINE) else None


def create_sqlite(conn: sqlite3.Connection) -> bool:
    """Lay down the whole schema in one transaction if the file holds no table yet.

    Returns False (having changed nothing) when the store is not empty or the rendered schema
    is not at HEAD; the caller then migrates with Alembic as usual.
    """
    try:
        text = FRESH_SQLITE.read_text(encoding="utf-8")
    except OSError:
        return False
    if rendered_revision(text) != migrate.HEAD:
        return False
    ddl = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    statements = [s.strip() for s in ddl.split(";\n") if s.strip()]
    conn.execute("BEGIN IMMEDIATE")  # two first openers: the second waits, then sees tables
    try:
        (existing,) = conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        if existing:
            conn.execute("ROLLBACK")
            return False
        for statement in statements:
            conn.execute(statement)
        conn.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (migrate.HEAD,))
        conn.execute("COMMIT")
    except BaseException:
        # A full disk or an I/O error has SQLite roll the transaction back itself: a ROLLBACK
        # then would fail, and its error would hide the one that says what happened.
        if conn.in_transaction:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
        raise
    return True


def render_sqlite(path: str) -> str:
    """Migrate a new SQLite file at `path` with Alembic and return its DDL, HEAD first."""
    from taskplan.store.db import Store

    Store(f"sqlite:///{path}", fresh=False).close()
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'"
            " ORDER BY rowid").fetchall()
    finally:
        conn.close()
    body = ";\n".join(str(sql) for (sql,) in rows)
    return f"{_REVISION_LINE}{migrate.HEAD}\n-- Rendered by `python -m taskplan.store.fresh` " \
           f"from the migrations; do not edit.\n{body};\n"


def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        text = render_sqlite(str(Path(folder) / "render.db"))
    FRESH_SQLITE.parent.mkdir(exist_ok=True)
    FRESH_SQLITE.write_text(text, encoding="utf-8")
    print(f"wrote {FRESH_SQLITE} at revision {migrate.HEAD}", file=sys.stderr)


if __name__ == "__main__":
    main()
