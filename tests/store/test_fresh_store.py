"""A new SQLite store is created in one step from the rendered schema, which must be exactly
what the migrations build; existing stores still go through Alembic."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from taskplan.store import fresh, migrate
from taskplan.store.db import Store


def master(path: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name"
                            ).fetchall()
    finally:
        conn.close()


def test_rendered_schema_is_what_the_migrations_build(tmp_path: Path) -> None:
    rendered = fresh.render_sqlite(str(tmp_path / "migrated.db"))
    assert fresh.FRESH_SQLITE.read_text(encoding="utf-8") == rendered, (
        "store/sql/fresh_sqlite.sql is stale: run `python -m taskplan.store.fresh`")


def test_fresh_store_equals_a_migrated_one(tmp_path: Path) -> None:
    Store(f"sqlite:///{tmp_path / 'fresh.db'}").close()
    Store(f"sqlite:///{tmp_path / 'migrated.db'}", fresh=False).close()
    assert master(tmp_path / "fresh.db") == master(tmp_path / "migrated.db")
    conn = sqlite3.connect(tmp_path / "fresh.db")
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
        (migrate.HEAD,)]
    conn.close()


def test_existing_tables_are_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE keep_me (x INTEGER)")
    conn.execute("INSERT INTO keep_me VALUES (7)")
    conn.commit()
    assert not fresh.create_sqlite(sqlite3.connect(path, isolation_level=None))
    Store(f"sqlite:///{path}").close()  # Alembic adds taskplan's tables beside it
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT x FROM keep_me").fetchall() == [(7,)]
    assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
        (migrate.HEAD,)]
    conn.close()


def test_first_openers_at_once_create_it_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}"
    code = f"from taskplan.store.db import Store; Store({url!r}).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    assert master(tmp_path / "race.db") == master_of_new(tmp_path)


def master_of_new(tmp_path: Path) -> list[tuple[str, str, str]]:
    Store(f"sqlite:///{tmp_path / 'one.db'}").close()
    return master(tmp_path / "one.db")
