"""A `foreach: {sql}` query that takes long (a heavy query, a locked table, a server that
hangs) must not hold the store meanwhile: on SQLite the transaction that inserts the items
holds the store's write lock, on PostgreSQL the run's row, so the query runs before it."""

from __future__ import annotations

import json
import secrets

import pytest
from engine_helpers import in_thread, run_agent, run_state, start_run, tasks, wait_for
from sql_targets import Target
from sqlalchemy import create_engine, text

from taskplan.engine import Engine
from taskplan.executors.sql import driver_url
from taskplan.store.db import Store


def test_a_foreach_query_that_blocks_does_not_hold_the_store(engine: Engine, store: Store,
                                                             target: Target) -> None:
    if target.kind != "postgresql":
        pytest.skip("an advisory lock on PostgreSQL makes the query wait")
    key = secrets.randbelow(2**31)
    query = f"SELECT g FROM generate_series(1, 3) g WHERE pg_advisory_lock({key}) IS NOT NULL"
    run_id = start_run(engine, json.dumps({
        "job": "slowq", "connections": {"db": "${TP_TARGET_URL}"},
        "tasks": {"fan": {"foreach": {"sql": query, "connection": "db"},
                          "shell": "echo {{ item.g }}"}}}))
    holder = create_engine(driver_url(target.url), isolation_level="AUTOCOMMIT")
    held: list[bool] = []
    with holder.connect() as conn:
        conn.execute(text(f"SELECT pg_advisory_lock({key})"))

        def waiting() -> bool:  # (the query shows as a FETCH from its cursor: ask pg_locks)
            return bool(target.run("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                   " AND NOT granted AND objid = :k", {"k": key})[0][0])

        def stop_while_the_query_waits() -> None:
            try:
                wait_for(lambda: waiting(), 20, "the query to wait for the lock")
                # Stopping the run writes its row (and, on SQLite, takes the write lock).
                stopper = in_thread(lambda: engine.stop_run(run_id))
                stopper.join(20)  # a hang guard: milliseconds unless the store is held
                held.append(stopper.is_alive())
            finally:
                conn.execute(text(f"SELECT pg_advisory_unlock({key})"))

        watcher = in_thread(stop_while_the_query_waits)
        run_agent(engine, run_id, timeout=90)
        watcher.join(30)
    holder.dispose()
    assert held == [False], "stopping the run waited for the foreach query"
    assert run_state(store, run_id) == "cancelled"
    assert tasks(store, run_id)["fan"]["state"] == "cancelled"
