"""Upgrading a store of the last release (schema 0003, tag v0.1.0) while runs are in flight:
the new code migrates it on open without rewriting a table, and finishes the runs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Boolean, create_engine, inspect, text

from taskplan.agent import Agent
from taskplan.engine import Engine
from taskplan.spec import load_job_text
from taskplan.store import migrate
from taskplan.store.db import Store
from taskplan.store.urls import sqlalchemy_url

RELEASED_SCHEMA = "0003"  # the schema of v0.1.0
# Tables a migration since the release copies into a new table (docs/releases.md): 0010 adds
# agents.labels with an expression default, which SQLite's ALTER TABLE cannot do in place;
# 0013 makes runs.id AUTOINCREMENT, which SQLite cannot add to a table.
REWRITTEN = {"sqlite": {"agents", "runs"}}
JOBCODE = Path(__file__).parent.parent / "integration" / "jobcode"
JOB = """
job: inflight
tasks:
  a: {python: "tpjobs:record", retries: 1}
  b: {python: "tpjobs:record", depends_on: [a]}
  each: {foreach: {values: [1, 2, 3]}, python: "tpjobs:record", depends_on: [a]}
"""


def work_in_flight(tmp_path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Rows of a store with a run whose first task is running on an agent that died, and a
    second run not started yet: made by the engine, to be written through the old columns."""
    scratch = Store(f"sqlite:///{tmp_path / 'scratch.db'}")
    try:
        engine = Engine(scratch)
        version_id, _, _ = engine.apply(load_job_text(JOB, "job.yaml", str(JOBCODE)))
        running = engine.create_run(version_id)
        engine.create_run(version_id)  # pending
        # Its process is unknown (no such pid), so only its lease (1 s) says it is gone.
        dead = engine.register_agent("old", "oldhost", 2**22 + 3, 1, 1.0)
        claims = engine.step(dead, [], 1, running).claims
        assert [c.task for c in claims] == ["a"]
        with scratch.read() as tx:
            return {t: [tuple(r) for r in tx.all(f"SELECT * FROM {t}")]
                    for t in inspect(scratch.engine).get_table_names() if t != "alembic_version"}
    finally:
        scratch.close()


def columns(conn: Any, table: str) -> list[str]:
    return [c["name"] for c in inspect(conn).get_columns(table)]


def table_storage(conn: Any) -> dict[str, Any]:
    """Where each table's rows live: a rewritten (recreated or copied) table moves."""
    if conn.dialect.name == "sqlite":
        rows = conn.execute(text("SELECT name, rootpage FROM sqlite_master WHERE type = 'table'"))
    else:
        rows = conn.execute(text("SELECT relname, relfilenode FROM pg_class WHERE relkind = 'r'"
                                 " AND relnamespace = 'public'::regnamespace"))
    return {str(n): int(p) for n, p in rows}


def test_runs_in_flight_finish_after_an_upgrade_from_the_release(store_url: str,
                                                                 tmp_path: Path) -> None:
    rows = work_in_flight(tmp_path)
    old = create_engine(sqlalchemy_url(store_url))
    try:
        with old.begin() as conn:
            from alembic import command

            command.upgrade(migrate.alembic_config(conn), RELEASED_SCHEMA)
        with old.begin() as conn:
            scratch_cols = {t: columns_of for t, columns_of in _scratch_columns(tmp_path).items()}
            for table in inspect(conn).get_table_names():
                if table == "alembic_version" or not rows.get(table):
                    continue
                # Only the columns the released schema has: what the old code wrote.
                keep = [c for c in columns(conn, table) if c in scratch_cols[table]]
                idx = [scratch_cols[table].index(c) for c in keep]
                flags = {c["name"] for c in inspect(conn).get_columns(table)
                         if isinstance(c["type"], Boolean)}  # SQLite kept them as 0/1
                conn.execute(
                    text(f"INSERT INTO {table} ({', '.join(keep)}) VALUES "
                         f"({', '.join(':' + c for c in keep)})"),
                    [{c: (bool(r[i]) if c in flags and r[i] is not None else r[i])
                      for c, i in zip(keep, idx, strict=True)} for r in rows[table]])
                if conn.dialect.name == "postgresql" and "id" in keep:
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                                      f" (SELECT MAX(id) FROM {table}))"))
            before = table_storage(conn)
    finally:
        old.dispose()

    time.sleep(1.1)  # the dead agent's lease runs out
    store = Store(store_url)  # the new code: migrates on open
    try:
        with store.engine.connect() as conn:
            assert migrate.current_revision(conn) == migrate.head_revision()
            after = table_storage(conn)
        # No migration since the release rewrote a table but those docs/releases.md names.
        moved = {t for t in before if after[t] != before[t]}
        assert moved <= REWRITTEN.get(conn.dialect.name, set()), moved
        notes = (Path(__file__).parents[2] / "docs" / "releases.md").read_text()
        assert all(f"`{t}`" in notes for t in moved)
        engine = Engine(store)
        Agent(engine, slots=2, exit_when_idle=0.3).run()
        with store.read() as tx:
            runs = tx.all("SELECT id, state FROM runs ORDER BY id")
            a = tx.all("SELECT a.attempt, a.state FROM attempts a JOIN task_runs t"
                       " ON t.id = a.task_run_id WHERE t.run_id = 1 AND t.task = 'a'"
                       " ORDER BY a.attempt")
            items = tx.scalar("SELECT COUNT(*) FROM task_runs WHERE parent_id IS NOT NULL"
                              " AND state = 'succeeded'")
        assert runs == [(1, "succeeded"), (2, "succeeded")]
        assert a == [(1, "lost"), (2, "succeeded")]  # the dead agent's attempt, then the retry
        assert items == 6
    finally:
        store.close()


def _scratch_columns(tmp_path: Path) -> dict[str, list[str]]:
    eng = create_engine(f"sqlite:///{tmp_path / 'scratch.db'}")
    try:
        with eng.connect() as conn:
            return {t: columns(conn, t) for t in inspect(conn).get_table_names()}
    finally:
        eng.dispose()
