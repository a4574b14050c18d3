"""The migrations build exactly the declared schema, idempotently, even under concurrent opens."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from taskplan.errors import StoreVersionError
from taskplan.store import migrate
from taskplan.store.db import Store
from taskplan.store.schema import metadata
from taskplan.store.urls import sqlalchemy_url


def schema_diff(store: Store) -> list[object]:
    with store.engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True})
        return list(compare_metadata(ctx, metadata))


def snapshot(conn: object) -> dict[str, object]:
    """Columns, indexes and the revision, in comparable plain data."""
    insp = inspect(conn)
    return {
        t: ([(c["name"], str(c["type"]), c["nullable"], c["default"])
             for c in insp.get_columns(t)],
            sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(t)))
        for t in sorted(insp.get_table_names())
    }


def test_migrations_produce_exactly_the_declared_schema(store_url: str) -> None:
    store = Store(store_url)
    try:
        assert schema_diff(store) == []
        tables = set(inspect(store.engine).get_table_names())
        assert set(metadata.tables) <= tables
        assert tables - set(metadata.tables) == {"alembic_version"}
        with store.engine.connect() as conn:
            assert migrate.current_revision(conn) == migrate.head_revision()
    finally:
        store.close()


def test_opening_twice_is_a_no_op(store_url: str) -> None:
    first = Store(store_url)
    with first.tx() as tx:
        tx.run("INSERT INTO pools (name, size) VALUES ('p', 3)")
    first.close()
    engine = create_engine(sqlalchemy_url(store_url))
    with engine.connect() as conn:
        before = snapshot(conn)
    engine.dispose()
    second = Store(store_url)
    try:
        assert schema_diff(second) == []
        with second.engine.connect() as conn:
            after = snapshot(conn)
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        assert after == before
        assert versions == [(migrate.head_revision(),)]
        with second.read() as tx:
            assert tx.all("SELECT name, size FROM pools") == [("p", 3)]
    finally:
        second.close()


def test_threads_opening_a_fresh_file_at_once_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    n = 6
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    stores: list[Store] = []
    lock = threading.Lock()

    def open_store() -> None:
        barrier.wait()
        try:
            st = Store(url)
            with lock:
                stores.append(st)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert errors == []
        assert len(stores) == n
        assert schema_diff(stores[0]) == []
        with stores[0].engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        assert versions == [(migrate.head_revision(),)]
    finally:
        for st in stores:
            st.close()


OPEN_AND_USE = """
import sys, time
from taskplan.store.db import Store
start = float(sys.argv[2])
while time.time() < start:
    time.sleep(0.001)
st = Store(sys.argv[1])
with st.tx() as tx:
    tx.run("INSERT INTO leases (name, holder, until) VALUES (:n, 'x', 0)", {"n": sys.argv[3]})
st.close()
"""


def test_processes_opening_a_fresh_file_at_once_all_succeed(tmp_path: Path) -> None:
    import time

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    start = time.time() + 1.0  # every process waits for the same instant, then opens
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_AND_USE, url, str(start), f"p{i}"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    store = Store(url)
    try:
        assert schema_diff(store) == []
        with store.read() as tx:
            assert sorted(r[0] for r in tx.all("SELECT name FROM leases")) == [
                "p0", "p1", "p2", "p3"]
            assert tx.all("SELECT version_num FROM alembic_version") == [
                (migrate.head_revision(),)]
    finally:
        store.close()


@pytest.mark.parametrize("table", sorted(metadata.tables))
def test_every_declared_table_is_usable_after_migration(store: Store, table: str) -> None:
    with store.read() as tx:
        assert tx.scalar(f"SELECT COUNT(*) FROM {table}") == 0


def test_head_constant_matches_the_migration_scripts() -> None:
    # The store skips importing Alembic when the schema is at migrate.HEAD, so HEAD must be
    # the newest script's revision or a new migration would never be applied.
    assert migrate.head_revision() == migrate.HEAD


def test_a_store_at_head_is_detected_without_alembic(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'h.db'}")
    try:
        assert migrate.is_current(store.connection())
        store.connection().execute("UPDATE alembic_version SET version_num = 'old'")
        assert not migrate.is_current(store.connection())
    finally:
        store.close()


def test_a_schema_newer_than_this_taskplan_is_refused_not_retried(store_url: str) -> None:
    store = Store(store_url)
    with store.tx() as tx:
        tx.run("UPDATE alembic_version SET version_num = '9999'")
    store.close()
    for create in (True, False):
        with pytest.raises(StoreVersionError, match=f"has schema 9999, newer than this taskplan"
                                                    f" knows \\({migrate.HEAD}\\)"):
            Store(store_url, create=create)


def test_run_ids_migration_goes_down_and_up_keeping_runs(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'd.db'}"
    Store(url).close()
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO runs (id, job_id, version_id, state, \"trigger\", params,"
                " on_failure, created_at) VALUES (7, 1, 1, 'succeeded', 'manual', '{}',"
                " 'continue', 0)")
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "0012")
        with engine.begin() as conn:
            ddl = conn.exec_driver_sql(
                "SELECT sql FROM sqlite_master WHERE name = 'runs'").scalar_one()
            assert "AUTOINCREMENT" not in ddl and "pk_runs PRIMARY KEY (id)" in ddl
            assert conn.exec_driver_sql("SELECT id FROM runs").scalars().all() == [7]
            command.upgrade(migrate.alembic_config(conn), "head")
        with engine.begin() as conn:
            assert conn.exec_driver_sql("SELECT seq FROM sqlite_sequence WHERE name = 'runs'"
                                        ).scalar_one() == 7
    finally:
        engine.dispose()
