"""SQLite's hot-path settings: checkpoints run on a thread of their own, not inside a
writer's COMMIT, and temporary tables (every UPDATE ... RETURNING builds one) stay in memory."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from taskplan.store.db import Store
from taskplan.store.dialects import sqlite as sqlite_dialect
from taskplan.store.dialects.sqlite import (
    AUTOCHECKPOINT_PAGES,
    CHECKPOINT_EVERY,
    SQLiteDialect,
)


def _commits(store: Store, n: int) -> None:
    for _ in range(n):
        with store.tx() as tx:
            count = tx.scalar("SELECT COUNT(*) FROM pools")
            tx.run("INSERT INTO pools (name, size) VALUES (:n, 1)", {"n": f"p{count}"})


def test_writers_leave_checkpoints_to_the_checkpointer(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        dialect = store.dialect
        assert isinstance(dialect, SQLiteDialect)
        pages = store.connection().execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert pages == AUTOCHECKPOINT_PAGES  # SQLite's own is only the backstop
        checkpointer = dialect.checkpointer
        assert not checkpointer.running  # opening the store started nothing
        _commits(store, 1)
        assert checkpointer.running  # the first commit starts it, so no hop of a run does
        _commits(store, CHECKPOINT_EVERY - 2)
        assert checkpointer.done == 0
        _commits(store, 1)
        deadline = time.monotonic() + 30
        while checkpointer.done == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert checkpointer.done == 1
        # Everything committed so far is in the database file: a checkpoint finds nothing
        # left to copy (log frames == checkpointed frames).
        busy, log, done = store.connection().execute(
            "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        assert busy == 0 and log == done
    finally:
        store.close()
    assert not checkpointer.running  # close stopped it
    with store.read() as tx:  # a closed store opens again, its rows intact
        assert tx.scalar("SELECT COUNT(*) FROM pools") == CHECKPOINT_EVERY
    store.close()


def test_an_idle_store_does_not_start_the_thread_again_for_each_commit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_dialect, "CHECKPOINTER_IDLE", 0.05)
    store = Store(f"sqlite:///{tmp_path / 'i.db'}")
    try:
        dialect = store.dialect
        assert isinstance(dialect, SQLiteDialect)
        checkpointer = dialect.checkpointer
        _commits(store, 1)
        _wait_for(lambda: not checkpointer.running)  # left for want of work
        _commits(store, 3)  # an idle agent's heartbeats: no thread, no connection
        assert not checkpointer.running
        _commits(store, CHECKPOINT_EVERY)  # a checkpoint due brings it back
        _wait_for(lambda: checkpointer.done == 1)
    finally:
        store.close()


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def test_temporary_tables_stay_in_memory(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 't.db'}")
    try:
        assert store.connection().execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
    finally:
        store.close()
