"""Connections and transactions on taskplan's own database.

The hot path (claim, finish, ready the dependants) runs named SQL on the DBAPI connection:
SQLAlchemy Core is used for the schema, migrations and cold paths only (see DESIGN.md for the
measured gap). SQL is written once with `:name` binds and translated per driver.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event

from taskplan.errors import StoreUnavailableError
from taskplan.store import migrate
from taskplan.store.urls import backend_of, mask_url, sqlalchemy_url, sqlite_path

Row = tuple[Any, ...]
Params = dict[str, Any] | Sequence[Any]

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """`:name` binds -> `%(name)s` for psycopg; literal % doubled."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


def _sqlite_pragmas(conn: Any) -> None:
    # WAL lets readers (status, logs --follow) run beside the writer; NORMAL is durable
    # across process crashes, which is the failure that matters for a job store.
    conn.isolation_level = None
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA foreign_keys=OFF")


class Tx:
    """One open transaction: thin helpers over a DBAPI cursor."""

    def __init__(self, store: Store, conn: Any) -> None:
        self.store = store
        self.conn = conn
        self.cur = conn.cursor()
        self.pg = store.backend == "postgresql"
        self.wake = False  # set by operations whose effect other processes should see now

    def _sql(self, sql: str) -> str:
        return to_pyformat(sql) if self.pg else sql

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        self.cur.execute(self._sql(sql), params)
        return list(self.cur.fetchall())

    def one(self, sql: str, params: Params = ()) -> Row | None:
        self.cur.execute(self._sql(sql), params)
        row = self.cur.fetchone()
        return tuple(row) if row is not None else None

    def scalar(self, sql: str, params: Params = ()) -> Any:
        row = self.one(sql, params)
        return row[0] if row else None

    def run(self, sql: str, params: Params = ()) -> int:
        self.cur.execute(self._sql(sql), params)
        return int(self.cur.rowcount)

    def many(self, sql: str, seq: Sequence[Params]) -> None:
        if seq:
            self.cur.executemany(self._sql(sql), seq)


class Waker:
    """In-process wake-up: a generation counter under a condition variable."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._gen = 0

    @property
    def generation(self) -> int:
        return self._gen

    def notify(self) -> None:
        with self._cond:
            self._gen += 1
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float | None) -> int:
        with self._cond:
            if self._gen == seen:
                self._cond.wait(timeout)
            return self._gen


class Store:
    """taskplan's database: schema upkeep, per-thread connections, transactions, wake-ups."""

    def __init__(self, url: str, *, migrate_schema: bool = True) -> None:
        self.url = url
        self.backend = backend_of(url)
        if self.backend not in ("sqlite", "postgresql"):
            raise StoreUnavailableError(
                f"unsupported store URL {mask_url(url)}: use sqlite:///FILE or postgresql://..."
            )
        self.waker = Waker()
        self._local = threading.local()
        # Writers in one process queue here instead of spinning in SQLite's busy handler.
        self._write_lock = threading.Lock() if self.backend == "sqlite" else None
        self._conns: list[Any] = []
        self._conns_lock = threading.Lock()
        self.engine: Engine = self._make_engine()
        if migrate_schema:
            try:
                migrate.upgrade(self.engine)
            except StoreUnavailableError:
                raise
            except Exception as exc:
                raise StoreUnavailableError(
                    f"cannot open the store {mask_url(url)}: {mask_url(str(exc))}"
                ) from exc

    # -- connections ---------------------------------------------------------------------
    def _make_engine(self) -> Engine:
        engine = create_engine(sqlalchemy_url(self.url))
        if self.backend == "sqlite":
            # pysqlite's implicit transactions would defeat BEGIN IMMEDIATE: take them over.
            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _record: Any) -> None:
                _sqlite_pragmas(dbapi_conn)

            @event.listens_for(engine, "begin")
            def _begin(conn: Any) -> None:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
        return engine

    def _new_connection(self) -> Any:
        if self.backend == "sqlite":
            path = sqlite_path(self.url)
            try:
                conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                       timeout=30.0)
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"cannot open SQLite store {path}: {exc}") from exc
            _sqlite_pragmas(conn)
            return conn
        import psycopg

        try:
            return psycopg.connect(self._pg_dsn(), autocommit=False)
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot reach the store {mask_url(self.url)}: {mask_url(str(exc))}"
            ) from exc

    def _pg_dsn(self) -> str:
        return self.url.replace("postgresql+psycopg://", "postgresql://", 1)

    def connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._new_connection()
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            with self._conns_lock:
                if conn in self._conns:
                    self._conns.remove(conn)
            try:
                conn.close()
            except Exception:
                pass

    def close(self) -> None:
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except Exception:
                pass
        self._local = threading.local()
        self.engine.dispose()

    # -- transactions --------------------------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[Tx]:
        """A write transaction. Commits on success, rolls back on any exception."""
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            conn = self.connection()
            if self.backend == "sqlite":
                conn.execute("BEGIN IMMEDIATE")
            tx = Tx(self, conn)
            try:
                yield tx
                conn.commit() if self.backend == "postgresql" else conn.execute("COMMIT")
            except BaseException:
                try:
                    conn.rollback() if self.backend == "postgresql" else conn.execute("ROLLBACK")
                except Exception:
                    self.drop_connection()
                raise
        finally:
            if lock is not None:
                lock.release()
        if tx.wake:
            self.waker.notify()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only snapshot (a deferred transaction on SQLite)."""
        conn = self.connection()
        if self.backend == "sqlite":
            conn.execute("BEGIN")
        tx = Tx(self, conn)
        try:
            yield tx
        finally:
            if self.backend == "sqlite":
                conn.execute("COMMIT")
            else:
                conn.rollback()

    # -- waiting for other processes -----------------------------------------------------
    def data_version(self) -> int:
        """A number that changes when another connection commits (SQLite only)."""
        conn = self.connection()
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def wait(self, seen: int, timeout: float, *, poll: float = 0.05) -> int:
        """Sleep until woken in-process, another process commits, or `timeout` passes.

        Returns the waker generation to pass back next time.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        if self.backend != "sqlite":
            return self.waker.wait(seen, timeout)
        version = self.data_version()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return self.waker.generation
            gen = self.waker.wait(seen, min(left, poll))
            if gen != seen:
                return gen
            if self.data_version() != version:
                return gen + 0  # another process committed: the caller re-reads
