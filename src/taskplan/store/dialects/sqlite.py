"""SQLite: one writer at a time, no server, other processes seen through the WAL file.

- Connections: WAL journal (readers beside the writer), synchronous=NORMAL, a busy timeout.
- Writes: BEGIN IMMEDIATE, behind an in-process lock so this process's writers queue in
  Python rather than spin in SQLite's busy handler. No row locks are needed, so every lock
  method of the dialect is a no-op and the lock suffixes are empty.
- Reads: a deferred transaction (a snapshot).
- Wake-ups: a stat of the -wal file every poll, and `PRAGMA data_version` when it changed.
- Checkpoints (copying the WAL back into the file, with its fsyncs) run on a thread of their
  own, not inside a writer's COMMIT (`Checkpointer`).
- Errors: a full disk, a read-only file or a lock held past the busy timeout say the store is
  unavailable (`sqlite_fault`); anything else is a bug and propagates as is.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskplan.errors import StoreUnavailableError
from taskplan.store.dialects import Dialect, RowsInsert
from taskplan.store.tx import Params, Row, Tx
from taskplan.store.urls import sqlalchemy_url, sqlite_path

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from taskplan.store.db import Store

# An idle waiter asks SQLite whether another process committed at least this often (s).
VERSION_CHECK_EVERY = 5.0
# Commits between two background checkpoints (a chain hop's commit adds about 20 WAL pages,
# so this is close to SQLite's own default of 1,000 pages).
CHECKPOINT_EVERY = 48
# SQLite's own checkpoint, inside the COMMIT that crosses this many WAL pages, stays only as a
# backstop for transactions larger than the background one keeps up with (a big expansion).
AUTOCHECKPOINT_PAGES = 10_000
# Bound values in one statement: 999 is the smallest SQLITE_MAX_VARIABLE_NUMBER (SQLite before
# 3.32), so a multi-row INSERT of that many binds runs on every build Python may link.
MAX_BINDS = 999
# From this many rows an INSERT goes as multi-row statements: executemany's per-row round
# through the module costs a third more on a run's thousand task runs and their events.
MULTI_ROW_FROM = 8
CHECKPOINTER_IDLE = 5.0  # s without a checkpoint due after which its thread leaves
FILE_CHECK_EVERY = 0.1  # s: how often a thread checks that the store file is still its own


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


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _pragmas(conn: Any) -> None:
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
    conn.execute(f"PRAGMA wal_autocheckpoint={AUTOCHECKPOINT_PAGES}")
    # SQLite builds a temporary table for every UPDATE ... RETURNING and every IN (SELECT ...)
    # list, and by default backs each with a temporary file (opened, used, closed: syscalls
    # in every claim and finish). In memory, a chain hop's UPDATEs with RETURNING take
    # 12-15 us instead of 20-80 (decrement_dependants was the costliest statement of a hop).
    # The store's queries keep such tables small: batches of at most a few thousand rows.
    conn.execute("PRAGMA temp_store=MEMORY")


class Checkpointer:
    """Copies the WAL back into the database file on a thread with its own connection.

    SQLite checkpoints inside the COMMIT that crosses 1,000 WAL pages by default: that commit
    then copies the pages and fsyncs the WAL and the file, 5-20 ms here, and a chain hop
    whose commit it is waits for it (it was the tail of the hop times: p99 10x the median).
    A PASSIVE checkpoint takes no write lock, so here it runs beside the writers; with the
    GIL released inside SQLite, a writer's commit stays a write to the page cache. The
    thread starts with a store's first commit, is poked every CHECKPOINT_EVERY commits, and
    leaves after CHECKPOINTER_IDLE seconds without a poke (an idle or forgotten store keeps
    no thread; the next commit starts one again).
    """

    def __init__(self, dialect: SQLiteDialect) -> None:
        self._dialect = dialect
        self._lock = threading.Lock()
        self._due = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._started = False  # a thread was started once
        self.commits = 0  # counted by the writers, under the dialect's write lock
        self.done = 0  # checkpoints run

    def committed(self) -> None:
        """After each commit. A store's first commit starts the thread, which opens its
        connection at once: that costs a thread hand-off and a connect, better paid then
        (applying a job, creating a run) than by the commit that first needs a checkpoint,
        in the middle of a run (it was a chain's slowest hop but the first). Once it has
        left for want of work, only a due checkpoint brings it back: an idle agent's
        heartbeat every few seconds would otherwise start a thread and open a connection
        (six statements) each time."""
        self.commits += 1
        if self.commits >= CHECKPOINT_EVERY:
            self.commits = 0
            self._start(due=True)
        elif not self._started:
            self._start(due=False)

    @property
    def running(self) -> bool:
        """Whether the thread is there (for tests)."""
        return self._thread is not None

    def poke(self) -> None:
        """Checkpoint soon."""
        self._start(due=True)

    def _start(self, *, due: bool) -> None:
        with self._lock:
            if due:
                self._due.set()
            if self._thread is None:
                self._started = True
                self._thread = threading.Thread(target=self._run, daemon=True,
                                                name="taskplan-sqlite-checkpoint")
                self._thread.start()

    def close(self) -> None:
        """Stop the thread, after the checkpoint it may be running (a later poke starts
        another: a closed store opens connections again when used)."""
        with self._lock:
            thread = self._thread
            if thread is None:
                return
            self._stopping = True
            self._due.set()
        if thread is not threading.current_thread():
            thread.join()
        with self._lock:
            self._stopping = False

    def _run(self) -> None:
        conn = None
        try:
            try:
                conn = self._dialect.new_connection()
            except (sqlite3.Error, StoreUnavailableError):
                pass  # opened again when a checkpoint is due
            while True:
                if not self._due.wait(CHECKPOINTER_IDLE):
                    with self._lock:
                        if not self._due.is_set():
                            self._thread = None
                            return
                self._due.clear()
                if self._stopping:
                    return
                try:
                    if conn is None:
                        conn = self._dialect.new_connection()
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.done += 1
                except (sqlite3.Error, StoreUnavailableError):
                    # Nothing is lost: the next poke, SQLite's backstop or the last
                    # connection's close checkpoints instead.
                    if conn is not None:
                        conn.close()
                        conn = None
        finally:
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None
            if conn is not None:
                conn.close()


class SQLiteDialect(Dialect):
    name = "sqlite"
    row_locks = False
    server_step = False
    batch_pause = 0.1  # SQLite's longest busy-handler sleep
    wakes_on_every_commit = True
    for_update = ""
    skip_locked = ""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        # Absolute once: a task run in this process may change the working directory.
        self.path = os.path.abspath(sqlite_path(self.url))
        # Writers in one process queue here instead of spinning in SQLite's busy handler.
        self.write_lock = threading.Lock()
        self.checkpointer = Checkpointer(self)
        # The file's (device, inode) once this store has opened it: later connections must
        # find that same file, not create an empty one where it was deleted.
        self._file: tuple[int, int] | None = None

    # -- opening -------------------------------------------------------------------------
    def absent(self) -> str | None:
        return None if os.path.exists(self.path) else os.path.abspath(self.path)

    def where(self) -> str:
        return os.path.abspath(self.path)

    def new_connection(self) -> Any:
        path = self.path
        # Once opened, never again created: mode=rw fails where the file has gone.
        target, uri = ((f"file:{urllib.parse.quote(path)}?mode=rw", True)
                       if self._file is not None else (path, False))
        try:
            conn = sqlite3.connect(target, isolation_level=None, check_same_thread=False,
                                   timeout=sqlite_busy_timeout(), uri=uri)
        except sqlite3.Error as exc:
            if self._file is not None and not os.path.exists(path):
                raise self._gone() from exc
            raise StoreUnavailableError(f"cannot open SQLite store {path}: {exc}") from exc
        try:
            _pragmas(conn)
        except sqlite3.Error as exc:
            conn.close()
            raise (sqlite_fault(path, exc) or StoreUnavailableError(
                f"cannot open SQLite store {path}: {exc}")) from exc
        file = _identity(path)
        if file is None:  # deleted since it was opened
            conn.close()
            raise self._gone()
        self.local.file = self._file = file
        self.local.file_checked = time.monotonic()
        return conn

    def fault(self, exc: BaseException) -> StoreUnavailableError | None:
        return sqlite_fault(self.path, exc)

    def probe(self) -> Any:
        """Read-only and without the pragmas: a file that is not a store (another program's
        database, an empty file) is left exactly as it was. Closed by the caller."""
        target = f"file:{urllib.parse.quote(self.path)}?mode=ro"
        try:
            return sqlite3.connect(target, uri=True, timeout=sqlite_busy_timeout())
        except sqlite3.Error as exc:
            raise StoreUnavailableError(f"cannot open SQLite store {self.path}: {exc}") from exc

    def current_connection(self) -> Any:
        """This thread's connection, replaced when the file at the path is no longer the one
        it has open (deleted, or another file moved there): otherwise its transactions would
        go on reading and committing into a file nobody else can see."""
        local = self.local
        conn = getattr(local, "conn", None)
        if conn is not None:
            now = time.monotonic()
            # A stat costs a few microseconds (a round trip on a network file system): once
            # per FILE_CHECK_EVERY per thread is enough to stop writing into a deleted file.
            if now - getattr(local, "file_checked", 0.0) >= FILE_CHECK_EVERY:
                local.file_checked = now
                if _identity(self.path) != getattr(local, "file", None):
                    self.drop_connection()
        return self.connection()

    def _gone(self) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"SQLite store {self.path} is gone (deleted or moved while in use);"
            " nothing is written until it is back")

    def make_engine(self) -> Engine:
        from sqlalchemy import create_engine, event

        engine = create_engine(sqlalchemy_url(self.url),
                               connect_args={"timeout": sqlite_busy_timeout()})

        # pysqlite's implicit transactions would defeat BEGIN IMMEDIATE: take them over.
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            _pragmas(dbapi_conn)

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def create_fresh(self) -> bool:
        """A new file gets the whole schema in one step (store/fresh.py)."""
        from taskplan.store.fresh import create_sqlite

        return create_sqlite(self.connection())

    def _error(self, exc: sqlite3.Error) -> BaseException:
        """A full disk, a read-only file, a lock held past the busy timeout: the store is
        unavailable (daemons ride it out, commands exit 3 with this line). The connection is
        replaced, since an I/O error can leave it unusable. Anything else is a bug: as is."""
        fault = sqlite_fault(self.path, exc)
        if fault is None:
            return exc
        self.drop_connection()
        return fault

    # -- transactions --------------------------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[Tx]:
        local = self.local
        lock = self.write_lock
        lock.acquire()
        try:
            conn = self.current_connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise self._error(exc) from exc
            tx = Tx(self.store, conn)
            local.open_tx = tx
            try:
                yield tx
                conn.execute("COMMIT")
                self.checkpointer.committed()
            except BaseException as exc:
                try:
                    conn.execute("ROLLBACK")
                except Exception:
                    self.drop_connection()
                if isinstance(exc, sqlite3.Error):
                    raise self._error(exc) from exc
                raise
        finally:
            local.open_tx = None
            lock.release()
        if tx.wake:
            self.waker.notify()

    def close(self) -> None:
        self.checkpointer.close()  # first: the last connection's close checkpoints the rest
        super().close()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        conn = self.current_connection()
        try:
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        tx = Tx(self.store, conn)
        try:
            yield tx
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        finally:
            try:
                conn.execute("COMMIT")
            except sqlite3.Error:
                self.drop_connection()

    def insert_rows(self, tx: Tx, insert: RowsInsert, rows: Sequence[dict[str, Any]]) -> None:
        if len(rows) < MULTI_ROW_FROM:
            tx.many(insert.values, rows)
            return
        keys = [key for _, key, _ in insert.columns]
        per = max(1, MAX_BINDS // len(keys))
        for start in range(0, len(rows), per):
            part = rows[start:start + per]
            tx.run(_multi_row_sql(insert, len(part)), [row[k] for row in part for k in keys])

    def many_returning(self, cur: Any, sql: str, seq: Sequence[Params]) -> list[Row]:
        # sqlite3's executemany refuses statements that return rows: one execute each.
        out: list[Row] = []
        for params in seq:
            cur.execute(sql, params)
            out.extend(tuple(r) for r in cur.fetchall())
        return out

    # -- other processes -----------------------------------------------------------------
    def _wal_signature(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path + "-wal")
        except (OSError, ValueError):
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def data_version(self) -> int:
        """A number that changes when another connection commits."""
        conn = self.connection()
        return int(conn.execute("PRAGMA data_version").fetchone()[0])

    def wait(self, seen: int, timeout: float, poll: float) -> int:
        gen = self.waker.generation
        if gen != seen:
            return gen  # woken already: no need to note where other processes stand
        deadline = time.monotonic() + max(0.0, timeout)
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


_MULTI_ROW: dict[tuple[str, int], str] = {}


def _multi_row_sql(insert: RowsInsert, n: int) -> str:
    """`INSERT ... VALUES (?, ...), ...` of n rows with positional binds, made once."""
    key = (insert.values, n)
    sql = _MULTI_ROW.get(key)
    if sql is None:
        one = "(" + ", ".join("?" * len(insert.columns)) + ")"
        sql = _MULTI_ROW[key] = (f"INSERT INTO {insert.table} ({insert.names}) VALUES "
                                 + ", ".join([one] * n))
    return sql
