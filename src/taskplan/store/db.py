"""Connections and transactions on taskplan's own database.

The hot path (claim, finish, ready the dependants) runs named SQL on the DBAPI connection:
SQLAlchemy Core is used for the schema, migrations and cold paths only (docs/architecture.md has the
measured gap). SQL is written once with `:name` binds and translated per driver.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskplan.errors import NoStoreError, StoreConflictError, StoreUnavailableError
from taskplan.store import migrate
from taskplan.store.pgserver import NOTIFY_CHANNEL
from taskplan.store.resilience import (  # re-exported: daemons import them from here
    BACKOFF_FIRST,
    BACKOFF_MAX,
    is_conflict,
    is_disconnect,
    retrying,
)
from taskplan.store.tx import Params, Row, Tx, to_pyformat
from taskplan.store.urls import (
    backend_of,
    check_store_url,
    mask_url,
    sqlalchemy_url,
    sqlite_path,
)
from taskplan.store.wake import Waker

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["BACKOFF_FIRST", "BACKOFF_MAX", "Params", "Row", "Store", "Tx", "Waker", "retrying",
           "to_pyformat"]


log = logging.getLogger(__name__)


# An idle waiter asks SQLite whether another process committed at least this often (s).
VERSION_CHECK_EVERY = 5.0

def sqlite_busy_timeout() -> float:
    """Seconds a SQLite writer waits for another connection's write lock before giving up
    (TASKPLAN_SQLITE_BUSY_TIMEOUT, default 30)."""
    try:
        return max(0.0, float(os.environ.get("TASKPLAN_SQLITE_BUSY_TIMEOUT", "30")))
    except ValueError:
        return 30.0


# SQLite primary result codes that say the file cannot be used now (or at all), not that a
# statement is wrong: what the store says about each.
_SQLITE_FAULTS = {
    5: "is locked by another program (still locked after the busy timeout of {busy:g}s)",
    6: "is locked by another program (still locked after the busy timeout of {busy:g}s)",
    8: "is read-only (taskplan writes the file and, beside it, its -wal and -shm files)",
    10: "could not be written or read (disk I/O error: is its disk full?)",
    13: "is on a full disk (database or disk is full)",
    14: "cannot be opened (check that its folder exists and is writable)",
}


def sqlite_fault(path: str, exc: BaseException) -> StoreUnavailableError | None:
    """The store-level error for a SQLite error that is about the file, else None."""
    code = getattr(exc, "sqlite_errorcode", None)
    if not isinstance(exc, sqlite3.Error) or code is None:
        return None
    primary = int(code) & 0xFF
    what = _SQLITE_FAULTS.get(primary)
    if what is None:
        return None
    if primary == 14 and os.path.exists(path) and not (
            os.access(path, os.W_OK) and os.access(os.path.dirname(path) or ".", os.W_OK)):
        what = _SQLITE_FAULTS[8]  # WAL needs to write beside the file: a read-only folder
    return StoreUnavailableError(
        f"SQLite store {path} {what.format(busy=sqlite_busy_timeout())}: {exc}")


def _sqlite_pragmas(conn: Any) -> None:
    # WAL lets readers (status, logs --follow) run beside the writer; NORMAL is durable
    # across process crashes, which is the failure that matters for a job store.
    conn.isolation_level = None
    # The busy timeout first: switching a fresh file to WAL needs a lock that a concurrent
    # opener may hold for a moment.
    busy = sqlite_busy_timeout()
    conn.execute(f"PRAGMA busy_timeout={int(busy * 1000)}")
    # SQLite skips the busy handler when the switch would deadlock with another opener's lock
    # upgrade, so "database is locked" can come back at once: retry for a while.
    deadline = time.monotonic() + busy
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=OFF")


_CREATE_HINT = "; `taskplan apply` or `taskplan run` creates one (or check --db)"


class Store:
    """taskplan's database: schema upkeep, per-thread connections, transactions, wake-ups."""

    def __init__(self, url: str, *, migrate_schema: bool = True, fresh: bool = True,
                 create: bool = True) -> None:
        """Open (and create or upgrade) the store at `url`.

        With create=False a store that does not exist yet is not created: UsageError
        "no store at ...", and nothing is written.
        """
        check_store_url(url)
        self.url = url
        self.backend = backend_of(url)
        if not create and self.backend == "sqlite":
            path = sqlite_path(url)
            if not os.path.exists(path):
                raise NoStoreError(f"no store at {os.path.abspath(path)}{_CREATE_HINT}")
        self.waker = Waker()
        self._local = threading.local()
        # Writers in one process queue here instead of spinning in SQLite's busy handler.
        self._write_lock = threading.Lock() if self.backend == "sqlite" else None
        self._conns: list[Any] = []
        # (backend pid, backend_start) of autocommit sessions lost mid-call: see fence_orphans.
        self._orphans: list[tuple[int, str]] = []
        self._conns_lock = threading.Lock()
        # PostgreSQL: backend pids of our own connections, whose NOTIFYs the listener ignores
        # (the in-process waker already told this process).
        self._own_pids: set[int] = set()
        self._listener: threading.Thread | None = None
        self._listener_stop = threading.Event()
        self._listening = threading.Event()
        self._engine: Engine | None = None
        if not create:
            try:
                exists = migrate.has_store(self.connection())
            except StoreUnavailableError:
                raise
            except Exception as exc:
                raise StoreUnavailableError(
                    f"cannot open the store {mask_url(url)}: {mask_url(str(exc))}") from exc
            if not exists:
                where = (os.path.abspath(sqlite_path(url)) if self.backend == "sqlite"
                         else mask_url(url))
                self.close()
                raise NoStoreError(f"no store at {where} (it holds no taskplan tables)"
                                 f"{_CREATE_HINT}")
        if migrate_schema:
            try:
                if not self._schema_current() and not (fresh and self._create_fresh()):
                    migrate.upgrade(self.engine)
            except StoreUnavailableError:
                raise
            except Exception as exc:
                raise StoreUnavailableError(
                    f"cannot open the store {mask_url(url)}: {mask_url(str(exc))}"
                ) from exc

    @property
    def engine(self) -> Engine:
        """SQLAlchemy engine for migrations and cold paths, created on first use."""
        if self._engine is None:
            self._engine = self._make_engine()
        return self._engine

    def _schema_current(self) -> bool:
        return migrate.is_current(self.connection())

    def _create_fresh(self) -> bool:
        """A new SQLite file gets the whole schema in one step (store/fresh.py)."""
        if self.backend != "sqlite":
            return False
        from taskplan.store.fresh import create_sqlite

        return create_sqlite(self.connection())

    # -- connections ---------------------------------------------------------------------
    def _make_engine(self) -> Engine:
        from sqlalchemy import create_engine, event

        if self.backend == "postgresql":
            # pre_ping: a pooled connection that died with a server restart is replaced
            # instead of failing the cold path that picks it up.
            engine = create_engine(sqlalchemy_url(self.url), pool_pre_ping=True,
                                   connect_args=_pg_connect_args())
        else:
            engine = create_engine(sqlalchemy_url(self.url),
                                   connect_args={"timeout": sqlite_busy_timeout()})
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
                                       timeout=sqlite_busy_timeout())
            except sqlite3.Error as exc:
                raise StoreUnavailableError(f"cannot open SQLite store {path}: {exc}") from exc
            try:
                _sqlite_pragmas(conn)
            except sqlite3.Error as exc:
                conn.close()
                raise (sqlite_fault(path, exc) or StoreUnavailableError(
                    f"cannot open SQLite store {path}: {exc}")) from exc
            return conn
        conn = self._pg_connect(autocommit=False)
        self._own_pids.add(conn.info.backend_pid)
        return conn

    def _pg_connect(self, *, autocommit: bool) -> Any:
        import psycopg
        from psycopg.types.string import StrDumper

        try:
            conn = psycopg.connect(self._pg_dsn(), autocommit=autocommit, **_pg_connect_args())
        except psycopg.Error as exc:
            raise StoreUnavailableError(
                f"cannot reach the store {mask_url(self.url)}: {mask_url(str(exc))}"
            ) from exc
        # Strings go as `text`, not `unknown`: one bind used both as a column value and in a
        # comparison (`state = :s ... CASE WHEN :s = 'ready'`) then has one type.
        conn.adapters.register_dumper(str, StrDumper)
        return conn

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
            self._discard(conn)
        self._drop_call_connection()

    def _drop_call_connection(self) -> None:
        """Forget this thread's autocommit connection. Its server session may still be running
        a call whose reply never came, and would then commit it on its own: `fence_orphans`
        ends such sessions before anyone reasons about what is committed."""
        conn = getattr(self._local, "call_conn", None)
        self._local.call_conn = None
        if conn is None:
            return
        session = getattr(self._local, "call_session", None)
        if session is not None:
            with self._conns_lock:
                self._orphans.append((int(session[0]), str(session[1])))
        self._discard(conn)

    def fence_orphans(self, timeout: float = 30.0) -> int:
        """Terminate server sessions of lost autocommit connections that still exist, and wait
        until they are gone (their last call then either committed or never will). Returns how
        many were still there. Raises StoreUnavailableError while the server is away."""
        with self._conns_lock:
            orphans, self._orphans = self._orphans, []
        found = 0
        try:
            for pid, started in orphans:
                deadline = time.monotonic() + timeout
                first = True
                while True:
                    with self.read() as tx:
                        alive = tx.scalar(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                            " WHERE pid = :p AND CAST(backend_start AS text) = :s",
                            {"p": pid, "s": started})
                    if alive is None:
                        break
                    found += first
                    first = False
                    if time.monotonic() > deadline:
                        log.warning("server session %s of a lost connection did not end", pid)
                        break
                    time.sleep(0.05)
        except BaseException:
            with self._conns_lock:
                self._orphans.extend(orphans)
            raise
        return found

    def _discard(self, conn: Any) -> None:
        with self._conns_lock:
            if conn in self._conns:
                self._conns.remove(conn)
        try:
            conn.close()
        except Exception:
            pass

    def close(self) -> None:
        self._listener_stop.set()
        listener = self._listener
        if listener is not None and listener is not threading.current_thread():
            listener.join(2.0)
        self._listener = None
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            try:
                conn.close()
            except Exception:
                pass
        self._local = threading.local()
        if self._engine is not None:
            self._engine.dispose()

    def _roll_back(self, conn: Any, exc: BaseException) -> None:
        """After a failed transaction: a dead connection surfaces as StoreUnavailableError,
        a live one is rolled back (or dropped if even that fails)."""
        if is_disconnect(conn, exc) and isinstance(exc, Exception):
            raise self._lost(conn, exc) from exc
        try:
            conn.rollback()
        except Exception:
            self.drop_connection()

    def _lost(self, conn: Any, exc: BaseException) -> StoreUnavailableError:
        """Forget this thread's dead connection; the next transaction opens a new one."""
        self.drop_connection()
        return self._lost_error(exc)

    def _lost_error(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"lost the connection to the store {mask_url(self.url)}: "
            f"{mask_url(' '.join(str(exc).split()))}")

    def _sqlite_error(self, exc: sqlite3.Error) -> BaseException:
        """A full disk, a read-only file, a lock held past the busy timeout: the store is
        unavailable (daemons ride it out, commands exit 3 with this line). The connection is
        replaced, since an I/O error can leave it unusable. Anything else is a bug: as is."""
        fault = sqlite_fault(sqlite_path(self.url), exc)
        if fault is None:
            return exc
        self.drop_connection()
        return fault

    # -- transactions --------------------------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[Tx]:
        """A write transaction. Commits on success, rolls back on any exception.

        On PostgreSQL a broken connection (server restart, network cut) is dropped and
        surfaces as StoreUnavailableError; the caller decides whether to retry. A commit that
        fails that way may or may not have been applied: callers' writes are fenced, so
        replaying them is safe.
        """
        if getattr(self._local, "open_tx", None) is not None:
            yield self._local.open_tx  # nested on this thread: join the open transaction
            return
        if self.backend == "postgresql":
            with self._pg_tx() as tx:
                yield tx
            return
        lock = self._write_lock
        if lock is not None:
            lock.acquire()
        try:
            conn = self.connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._sqlite_error(exc) from exc
            tx = Tx(self, conn)
            self._local.open_tx = tx
            try:
                yield tx
                conn.execute("COMMIT")
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    self.drop_connection()
                if isinstance(exc, sqlite3.Error):
                    raise self._sqlite_error(exc) from exc
                raise
        finally:
            self._local.open_tx = None
            if lock is not None:
                lock.release()
        if tx.wake:
            self.waker.notify()

    @contextmanager
    def _pg_tx(self) -> Iterator[Tx]:
        conn = self.connection()
        tx = Tx(self, conn)
        self._local.open_tx = tx
        try:
            yield tx
            if tx.wake:
                # Delivered to listeners at commit, once per transaction however many rows.
                tx.cur.execute(f"NOTIFY {NOTIFY_CHANNEL}")
            conn.commit()
        except BaseException as exc:
            self._roll_back(conn, exc)
            if is_conflict(exc):
                raise StoreConflictError(f"transaction rolled back: {str(exc).strip()}"
                                         ) from exc
            raise
        finally:
            self._local.open_tx = None
        if tx.wake:
            self.waker.notify()

    def call(self, sql: str, params: Params, *, wake: bool) -> list[Row] | None:
        """PostgreSQL: one statement as a transaction of its own, in one round trip.

        For server-side functions that do a whole transaction's work. It runs on a second
        connection of this thread, kept in autocommit. None when a transaction is open on
        this thread (the caller takes its general path, inside that transaction).
        """
        if getattr(self._local, "open_tx", None) is not None:
            return None
        conn = getattr(self._local, "call_conn", None)
        if conn is None:
            conn = self._pg_connect(autocommit=True)
            self._own_pids.add(conn.info.backend_pid)
            self._local.call_session = conn.execute(
                "SELECT pg_backend_pid(), CAST(backend_start AS text) FROM pg_stat_activity"
                " WHERE pid = pg_backend_pid()").fetchone()
            with self._conns_lock:
                self._conns.append(conn)
            self._local.call_conn = conn
            self._local.call_cur = conn.cursor()
        try:
            cur = self._local.call_cur
            cur.execute(to_pyformat(sql), params)
            rows = [tuple(r) for r in cur.fetchall()]
        except Exception as exc:
            if is_disconnect(conn, exc):
                self._drop_call_connection()
                raise self._lost_error(exc) from exc
            if is_conflict(exc):
                raise StoreConflictError(f"transaction rolled back: {str(exc).strip()}"
                                         ) from exc
            raise
        if wake:
            self.waker.notify()
        return rows

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A read-only snapshot (a deferred transaction on SQLite).

        Inside an open write transaction on the same thread it reads through that transaction
        (it shares the thread's connection, so ending a snapshot would end the write too).
        """
        if getattr(self._local, "open_tx", None) is not None:
            yield self._local.open_tx
            return
        conn = self.connection()
        if self.backend == "sqlite":
            try:
                conn.execute("BEGIN")
            except sqlite3.Error as exc:
                raise self._sqlite_error(exc) from exc
            tx = Tx(self, conn)
            try:
                yield tx
            except sqlite3.Error as exc:
                raise self._sqlite_error(exc) from exc
            finally:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error:
                    self.drop_connection()
            return
        tx = Tx(self, conn)
        try:
            yield tx
        except BaseException as exc:
            self._roll_back(conn, exc)
            raise
        try:
            conn.rollback()
        except Exception as exc:
            raise self._lost(conn, exc) from exc

    # -- waiting for other processes -----------------------------------------------------
    def _wal_signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(sqlite_path(self.url) + "-wal")
        except (OSError, ValueError):
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

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
            self.listen()
            return self.waker.wait(seen, timeout)
        version = self.data_version()
        wal = self._wal_signature()
        checked = time.monotonic()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return self.waker.generation
            gen = self.waker.wait(seen, min(left, poll))
            if gen != seen:
                return gen
            # Stat the WAL file (a syscall, not a query) every poll; ask SQLite only when it
            # changed, and every few seconds in case a change hid inside one mtime tick.
            now = time.monotonic()
            signature = self._wal_signature()
            if signature != wal or now - checked >= VERSION_CHECK_EVERY:
                wal, checked = signature, now
                if self.data_version() != version:
                    return gen

    # -- PostgreSQL LISTEN -----------------------------------------------------------------
    def listen(self) -> None:
        """Start (once) the thread that turns other processes' NOTIFYs into in-process wakes.

        It holds one extra connection that only listens: no queries while idle. Whenever it
        (re)connects it wakes every waiter, since notifications may have been missed.
        """
        if self.backend != "postgresql" or self._listener is not None:
            return
        with self._conns_lock:
            if self._listener is not None:
                return
            self._listener_stop.clear()
            thread = threading.Thread(target=self._listen_loop, name="taskplan-listen",
                                      daemon=True)
            self._listener = thread
        thread.start()

    def wait_listening(self, timeout: float = 5.0) -> bool:
        """Block until the listener has issued LISTEN (for tests and benchmarks)."""
        self.listen()
        return self._listening.wait(timeout)

    def _listen_loop(self) -> None:
        delay = BACKOFF_FIRST
        stop = self._listener_stop
        while not stop.is_set():
            try:
                conn = self._pg_connect(autocommit=True)
            except StoreUnavailableError:
                stop.wait(delay)
                delay = min(BACKOFF_MAX, delay * 2)
                continue
            try:
                conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                self._listening.set()
                delay = BACKOFF_FIRST
                self.waker.notify()  # whatever happened while we were not listening
                own = self._own_pids
                while not stop.is_set():
                    # Returns every 0.25 s to look at `stop`: a select() on the socket, not a
                    # query. Each notification wakes the waiters at once.
                    for note in conn.notifies(timeout=0.25):
                        if note.pid not in own:
                            self.waker.notify()
            except Exception as exc:  # the server went away: reconnect with backoff
                self._listening.clear()
                if not stop.is_set():
                    log.warning("store listener lost its connection, reconnecting: %s",
                                mask_url(" ".join(str(exc).split())))
                    stop.wait(delay)
            finally:
                try:
                    conn.close()
                except Exception:
                    pass
        self._listening.clear()


def _pg_connect_args() -> dict[str, Any]:
    """Fail fast on a dead server and notice a silently dropped one (TCP keepalives)."""
    return {
        "connect_timeout": int(os.environ.get("TASKPLAN_PG_CONNECT_TIMEOUT", "5")),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "application_name": "taskplan",
    }
