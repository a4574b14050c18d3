"""What differs between SQLite and PostgreSQL, chosen once when a Store opens.

`Dialect` holds what both backends share (one connection per thread and its bookkeeping)
and names every point where they differ; `sqlite.py` and
`postgresql.py` implement those points, and each is the one place to read for its backend:
how a connection is opened, how a write transaction begins and ends, how waiters learn of
other processes' commits, how rows are locked, how many rows are inserted at once, the
one-round-trip server call, and which errors mean "the store is unavailable".

Code above the store never branches on the backend: it calls `Store` (tx, read, call, wait)
and store operations; store operations use the attributes and lock methods below, which are
no-ops or empty strings on SQLite.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, ClassVar

from taskplan.store.urls import backend_of

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from taskplan.errors import StoreUnavailableError
    from taskplan.store.db import Store
    from taskplan.store.tx import Params, Row, Tx

__all__ = ["Dialect", "RowsInsert", "dialect_for"]


class RowsInsert:
    """An INSERT of many rows, each a dict keyed by bind name. `values` is the plain
    `INSERT ... VALUES (:key, ...)`; a dialect may send big batches another way (PostgreSQL:
    one statement reading a JSON document, using the column types given here)."""

    def __init__(self, table: str, columns: Sequence[tuple[str, str, str]]) -> None:
        """`columns`: (column, bind key, PostgreSQL type), in the order of the INSERT."""
        self.table = table
        self.columns = tuple(columns)
        self.names = ", ".join(c for c, _, _ in self.columns)
        self.values = (f"INSERT INTO {table} ({self.names})"
                       f" VALUES ({', '.join(':' + k for _, k, _ in self.columns)})")


class Dialect:
    """One open store's backend: per-thread connections plus everything that differs."""

    # "sqlite" | "postgresql" (also Store.backend).
    name: ClassVar[str]
    # Claims and run rows take row locks (concurrent writers); False: one writer at a time.
    row_locks: ClassVar[bool]
    # The agent's step runs as one call of a server function (`Store.call`).
    server_step: ClassVar[bool]
    # `Store.wait` returns on any other process's commit (True), or only on commits that set
    # `tx.wake` (False: a watcher that wants every change also re-reads on a timer).
    wakes_on_every_commit: ClassVar[bool]
    # Seconds a long batch job (a purge) leaves the write lock free between its transactions,
    # so that writers waiting for it get it (one writer at a time); 0 where writers overlap.
    batch_pause: ClassVar[float]
    # SELECT suffixes: hold the rows read until commit; claim candidates others do not hold.
    for_update: ClassVar[str]
    skip_locked: ClassVar[str]

    def __init__(self, store: Store) -> None:
        self.store = store
        self.url = store.url
        self.waker = store.waker
        # Per thread: `conn` (its connection) and `open_tx` (its open transaction, if any).
        self.local = threading.local()
        self.conns: list[Any] = []
        self.conns_lock = threading.Lock()

    # -- SQL text ------------------------------------------------------------------------
    @staticmethod
    def translate(sql: str) -> str:
        """SQL written with `:name` binds, as this driver takes it."""
        return sql

    # -- opening -------------------------------------------------------------------------
    def absent(self) -> str | None:
        """Where the store would be, when that can be seen to hold none before connecting."""
        return None

    def where(self) -> str:
        """The store's location as messages show it (no secrets)."""
        raise NotImplementedError

    def new_connection(self) -> Any:
        """A DBAPI connection in the mode the transactions below expect."""
        raise NotImplementedError

    def make_engine(self) -> Engine:
        """A SQLAlchemy engine (migrations and cold paths) set up like `new_connection`."""
        raise NotImplementedError

    def create_fresh(self) -> bool:
        """Lay down a new store's whole schema in one step, if this backend can."""
        return False

    def fault(self, exc: BaseException) -> StoreUnavailableError | None:
        """The store-level error for a driver error that is about the database's file or
        server (a full disk, a read-only file), in the store's own words; None if not."""
        return None

    def probe(self) -> Any:
        """A connection to look at what the database holds without changing it: this thread's
        own connection where opening one changes nothing (`connection_if_open` then is it)."""
        return self.connection()

    # -- per-thread connections ----------------------------------------------------------
    def connection_if_open(self) -> Any:
        return getattr(self.local, "conn", None)

    def connection(self) -> Any:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.new_connection()
            self.local.conn = conn
            with self.conns_lock:
                self.conns.append(conn)
        return conn

    def drop_connection(self) -> None:
        """Forget this thread's connection(s); the next transaction opens new ones."""
        conn = getattr(self.local, "conn", None)
        self.local.conn = None
        if conn is not None:
            self.discard(conn)

    def discard(self, conn: Any) -> None:
        with self.conns_lock:
            if conn in self.conns:
                self.conns.remove(conn)
        try:
            conn.close()
        except Exception:
            pass

    def close(self) -> None:
        with self.conns_lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            try:
                conn.close()
            except Exception:
                pass
        self.local = threading.local()

    # -- transactions (Store joins this thread's open transaction before asking for one) --
    def open_tx(self) -> Tx | None:
        """The transaction open on this thread, if any."""
        tx: Tx | None = getattr(self.local, "open_tx", None)
        return tx

    def tx(self) -> AbstractContextManager[Tx]:
        """A new write transaction on this thread's connection."""
        raise NotImplementedError

    def read(self) -> AbstractContextManager[Tx]:
        """A new read snapshot on this thread's connection."""
        raise NotImplementedError

    def snapshot(self) -> AbstractContextManager[Tx]:
        """A read whose statements all see one committed state (Store.snapshot)."""
        return self.read()

    def call(self, sql: str, params: Params, *, wake: bool) -> list[Row] | None:
        """One statement as a transaction of its own, in one round trip; None: not here
        (no server step on this backend, or a transaction is open on this thread)."""
        return None

    def many_returning(self, cur: Any, sql: str, seq: Sequence[Params]) -> list[Row]:
        """executemany of an `INSERT/UPDATE ... RETURNING`: every returned row, in order."""
        raise NotImplementedError

    def insert_rows(self, tx: Tx, insert: RowsInsert, rows: Sequence[dict[str, Any]]) -> None:
        tx.many(insert.values, rows)

    # -- locks (no-ops where writers take turns) -----------------------------------------
    def lock_runs(self, tx: Tx, run_ids: Iterable[int]) -> None:
        """Lock these runs, in id order, before touching their task runs (ops.lock_runs)."""

    def try_lock_runs(self, tx: Tx, run_ids: Iterable[int]) -> set[int]:
        """Lock those of these runs that no other transaction holds, as `lock_runs` does,
        without waiting for the others; the runs now locked (all of them where writers take
        turns)."""
        return set(run_ids)

    def lock_run_for_read(self, tx: Tx, run_id: int) -> str:
        """Lock one run as `lock_runs` does, but leave its row lock to the caller's SELECT:
        the suffix to add to it."""
        return ""

    def lock_row(self, tx: Tx, table: str, row_id: int) -> None:
        """Hold the row `id = row_id` of `table` until commit."""

    def serialize_inserts(self, tx: Tx, table: str) -> bool:
        """Make inserts into `table` take turns until commit, so new ids appear in commit
        order. True when that may have waited for another writer (re-read what was read)."""
        return False

    # -- other processes -----------------------------------------------------------------
    def wait(self, seen: int, timeout: float, poll: float) -> int:
        raise NotImplementedError

    def listen(self) -> None:
        """Start whatever turns other processes' commits into in-process wakes."""

    def wait_listening(self, timeout: float) -> bool:
        return True

    def fence_orphans(self, timeout: float) -> int:
        """End server sessions of calls whose reply was lost (see PostgreSQL)."""
        return 0


def dialect_for(store: Store) -> Dialect:
    """The dialect of the store's URL (already checked by `check_store_url`)."""
    if backend_of(store.url) == "postgresql":
        from taskplan.store.dialects.postgresql import PostgresDialect

        return PostgresDialect(store)
    from taskplan.store.dialects.sqlite import SQLiteDialect

    return SQLiteDialect(store)
