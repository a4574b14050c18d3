"""The store's dialect: chosen once, the same object everywhere, and each difference it owns
behaving as its backend needs (locks that hold on PostgreSQL, bulk inserts equal to plain
ones, the one-round-trip call absent on SQLite)."""

from __future__ import annotations

import psycopg
import pytest

from taskplan.store import ops
from taskplan.store.db import Store
from taskplan.store.dialects import RowsInsert
from taskplan.store.dialects.postgresql import BULK_FROM
from taskplan.store.dialects.sqlite import MAX_BINDS, MULTI_ROW_FROM


def test_the_dialect_is_chosen_once_and_shared(store: Store) -> None:
    dialect = store.dialect
    assert store.backend == dialect.name
    pg = dialect.name == "postgresql"
    assert dialect.name in ("sqlite", "postgresql")
    assert dialect.row_locks is pg and dialect.server_step is pg
    assert dialect.wakes_on_every_commit is not pg
    with store.tx() as tx:
        assert tx.dialect is dialect
        with store.read() as inner:
            assert inner is tx  # a nested read joins the open write
    with store.read() as tx:
        assert tx.dialect is dialect


def test_binds_are_translated_for_the_driver(store: Store) -> None:
    sql = "SELECT :a || '%' WHERE CAST(:a AS text) = :a"
    translated = store.dialect.translate(sql)
    if store.backend == "postgresql":
        assert translated == "SELECT %(a)s || '%%' WHERE CAST(%(a)s AS text) = %(a)s"
    else:
        assert translated is sql
    with store.read() as tx:
        assert tx.scalar(sql, {"a": "x"}) == "x%"


def test_the_claim_query_skips_locked_rows_only_where_rows_lock(store: Store) -> None:
    sql = ops.claim_candidates_sql(store.dialect, staged=False)
    assert sql.endswith(" FOR UPDATE SKIP LOCKED") is store.dialect.row_locks
    assert "FOR UPDATE" not in sql or store.dialect.row_locks


def test_the_server_call_exists_only_on_postgresql(store: Store) -> None:
    rows = store.call("SELECT 1", {}, wake=False)
    if store.backend == "postgresql":
        assert rows == [(1,)]
    else:
        assert rows is None  # the caller takes its general path
        assert store.fence_orphans() == 0


# SQLite: multi-row statements from MULTI_ROW_FROM rows, MAX_BINDS // 2 rows each here; the
# last sizes end a statement on a row and one past it.
@pytest.mark.parametrize("n", [1, BULK_FROM - 1, BULK_FROM, 3 * BULK_FROM, MULTI_ROW_FROM - 1,
                               2 * (MAX_BINDS // 2), 2 * (MAX_BINDS // 2) + 1])
def test_a_bulk_insert_writes_what_plain_inserts_write(store: Store, n: int) -> None:
    insert = RowsInsert("pools", (("name", "n", "text"), ("size", "s", "integer")))
    assert insert.values == "INSERT INTO pools (name, size) VALUES (:n, :s)"
    rows = [{"n": f"p{i:04d}", "s": i} for i in range(n)]
    with store.tx() as tx:
        tx.dialect.insert_rows(tx, insert, rows)
    with store.read() as tx:
        assert tx.all("SELECT name, size FROM pools ORDER BY name") == [
            (r["n"], r["s"]) for r in rows]


def test_the_task_run_insert_names_every_column_once() -> None:
    columns = [c for c, _, _ in ops.TR_INSERT.columns]
    keys = [k for _, k, _ in ops.TR_INSERT.columns]
    assert len(set(columns)) == len(columns) == len(set(keys)) == 16
    assert ops.TR_INSERT.values.startswith("INSERT INTO task_runs (run_id, task, kind,")


def _held_elsewhere(store: Store, sql: str) -> bool:
    """Whether another session is refused the rows `sql` locks (NOWAIT)."""
    with psycopg.connect(store.url, autocommit=False) as other:
        try:
            other.execute(sql + " FOR UPDATE NOWAIT")
        except psycopg.errors.LockNotAvailable:
            return True
        return False


def test_the_lock_methods_hold_rows_until_commit(store: Store) -> None:
    with store.tx() as tx:
        tx.run("INSERT INTO jobs (name, created_at, updated_at) VALUES ('j', 0, 0)")
        tx.run("INSERT INTO job_versions (job_id, version, spec_hash, definition, source_path,"
               " base_dir, created_at) VALUES (1, 1, 'h', '{}', '', '', 0)")
        tx.run("INSERT INTO runs (job_id, version_id, state, trigger, params, on_failure,"
               " created_at) VALUES (1, 1, 'running', 'manual', '{}', 'continue', 0)")
    if store.backend != "postgresql":
        with store.tx() as tx:  # no-ops: one writer at a time needs no row locks
            ops.lock_runs(tx, [1])
            tx.dialect.lock_row(tx, "jobs", 1)
            assert tx.dialect.lock_run_for_read(tx, 1) == ""
            assert not tx.dialect.serialize_inserts(tx, "label_sets")
            assert not tx.locked_runs and not tx.wake
        return
    with store.tx() as tx:
        ops.lock_runs(tx, [1])
        assert tx.locked_runs == {1} and tx.wake
        assert _held_elsewhere(store, "SELECT id FROM runs WHERE id = 1")
        assert tx.dialect.lock_run_for_read(tx, 1) == ""  # held already
    assert not _held_elsewhere(store, "SELECT id FROM runs WHERE id = 1")
    with store.tx() as tx:
        assert tx.dialect.lock_run_for_read(tx, 1) == " FOR UPDATE"
        tx.dialect.lock_row(tx, "jobs", 1)
        assert _held_elsewhere(store, "SELECT id FROM jobs WHERE id = 1")
    assert not _held_elsewhere(store, "SELECT id FROM jobs WHERE id = 1")
