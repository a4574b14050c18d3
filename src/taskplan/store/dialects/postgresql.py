"""PostgreSQL: concurrent writers, row locks, a server-side step, LISTEN/NOTIFY wake-ups.

- Connections: psycopg 3 with TCP keepalives and a short connect timeout; strings sent as
  `text`; SQL written with `:name` binds is translated to `%(name)s` (`to_pyformat`).
- Writes: psycopg's implicit transaction, committed at the end; a transaction that set
  `tx.wake` sends one NOTIFY, delivered to other processes at commit.
- Reads: a transaction rolled back at the end.
- Row locks: claims read candidates `FOR UPDATE SKIP LOCKED`; a transaction that changes task
  runs first locks their runs (`lock_runs`: advisory locks, then the rows, in id order);
  pool sizes, leases, backfills and jobs are read `FOR UPDATE` where counts must take turns.
- Bulk inserts: past a few rows, one INSERT ... SELECT FROM jsonb_to_recordset.
- The server step: `call` runs one statement in autocommit on a second connection of the
  thread; a session whose reply was lost is fenced (`fence_orphans`) before recovery.
- Wake-ups: a listener thread on its own connection turns NOTIFYs into in-process wakes.
- Errors: a dead connection (server restart, network cut) becomes StoreUnavailableError and
  the connection is replaced; a deadlock or serialization failure becomes StoreConflictError.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from taskplan.errors import StoreConflictError, StoreUnavailableError
from taskplan.store.dialects import Dialect, RowsInsert
from taskplan.store.pgserver import NOTIFY_CHANNEL, RUN_LOCK_CLASS
from taskplan.store.resilience import Backoff
from taskplan.store.tx import Params, Row, Tx
from taskplan.store.urls import mask_url, sqlalchemy_url

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from taskplan.store.db import Store

log = logging.getLogger("taskplan.store.db")

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """`:name` binds -> `%(name)s` for psycopg; literal % doubled."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


@lru_cache(maxsize=1)
def _text_dumper() -> type:
    """Strings as `text`, with a NUL (which PostgreSQL keeps in no text value) as U+FFFD: a
    task that printed one (binary output), or an error message holding one, failed "inside
    taskplan" with `DataError: PostgreSQL text fields cannot contain NUL (0x00) bytes`."""
    from psycopg.types.string import StrDumper

    class Text(StrDumper):
        def dump(self, obj: str) -> Any:
            return super().dump(obj.replace("\x00", "\ufffd") if "\x00" in obj else obj)

    return Text


def _one_line(reason: str) -> str:
    """libpq's lines ("Connection refused", "Is the server running ...?") as one sentence each."""
    return "; ".join(" ".join(line.split()) for line in reason.splitlines() if line.strip())


def connect_args() -> dict[str, Any]:
    """Fail fast on a dead server and notice a silently dropped one (TCP keepalives)."""
    return {
        "connect_timeout": int(os.environ.get("TASKPLAN_PG_CONNECT_TIMEOUT", "5")),
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "application_name": "taskplan",
    }


def is_disconnect(conn: Any, exc: BaseException) -> bool:
    """Did `exc` leave this psycopg connection unusable (server gone, network cut)?"""
    import psycopg

    if getattr(conn, "broken", False) or getattr(conn, "closed", False):
        return True
    return isinstance(exc, psycopg.OperationalError) and not isinstance(
        exc, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable
        | psycopg.errors.SerializationFailure | psycopg.errors.DeadlockDetected)


def is_conflict(exc: BaseException) -> bool:
    import psycopg

    return isinstance(exc, psycopg.errors.DeadlockDetected
                      | psycopg.errors.SerializationFailure)


def _conflict(exc: BaseException) -> StoreConflictError:
    return StoreConflictError(f"transaction rolled back: {str(exc).strip()}")


# PostgreSQL runs an executemany as one statement per row (pipelined, yet each parsed,
# planned and executed on its own); past a few rows one INSERT ... SELECT FROM
# jsonb_to_recordset(one JSON document) is much cheaper on both sides (and JSON is quicker for
# the driver to send than arrays, whose text elements it must quote one by one).
BULK_FROM = 8


@lru_cache(maxsize=64)
def _recordset_sql(insert: RowsInsert) -> str:
    types = ", ".join(f"{key} {kind}" for _, key, kind in insert.columns)
    return (f"INSERT INTO {insert.table} ({insert.names})"
            f" SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS x({types})")


# RUN_LOCK_CLASS (store/pgserver.py): the server step takes the same keys shared.
# One statement takes them all, in id order (the sorted subquery's order is the scan's).
_ADVISORY_LOCK_RUNS = (
    f"SELECT pg_advisory_xact_lock({RUN_LOCK_CLASS}, CAST(r % 2147483647 AS integer))"
    " FROM (SELECT r FROM unnest(CAST(:ids AS bigint[])) AS r ORDER BY r) AS s"
)
# The same keys, taken only where free: the runs whose lock this transaction now holds.
_TRY_ADVISORY_LOCK_RUNS = (
    "SELECT r FROM unnest(CAST(:ids AS bigint[])) AS r"
    f" WHERE pg_try_advisory_xact_lock({RUN_LOCK_CLASS}, CAST(r % 2147483647 AS integer))"
)


class PostgresDialect(Dialect):
    name = "postgresql"
    row_locks = True
    server_step = True
    batch_pause = 0.0
    wakes_on_every_commit = False
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"
    translate = staticmethod(to_pyformat)

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        # (backend pid, backend_start) of autocommit sessions lost mid-call: fence_orphans.
        self.orphans: list[tuple[int, str]] = []
        # Backend pids of our own connections, whose NOTIFYs the listener ignores (the
        # in-process waker already told this process).
        self.own_pids: set[int] = set()
        self.listener: threading.Thread | None = None
        self.listener_stop = threading.Event()
        self.listening = threading.Event()

    # -- opening -------------------------------------------------------------------------
    def where(self) -> str:
        return mask_url(self.url)

    def _connect(self, *, autocommit: bool) -> Any:
        import psycopg

        try:
            conn = psycopg.connect(self.url.replace("postgresql+psycopg://", "postgresql://", 1),
                                   autocommit=autocommit, **connect_args())
        except psycopg.Error as exc:
            # libpq's reason spans lines ("Connection refused\n\tIs the server running..."):
            # one line in a log.
            reason = _one_line(mask_url(str(exc)))
            raise StoreUnavailableError(
                f"cannot reach the store {mask_url(self.url)}: {reason}") from exc
        # Strings go as `text`, not `unknown`: one bind used both as a column value and in a
        # comparison (`state = :s ... CASE WHEN :s = 'ready'`) then has one type.
        conn.adapters.register_dumper(str, _text_dumper())
        if conn.info.server_version >= 140000:
            # A server or database with idle_session_timeout would drop the connections an
            # agent keeps between beats (and its LISTEN one), each drop an outage to ride out.
            # Set per session after connecting: an older server refuses the name at connect.
            try:
                conn.execute("SET idle_session_timeout = 0")
                if not autocommit:
                    conn.commit()
            except psycopg.Error as exc:
                conn.close()
                raise StoreUnavailableError(
                    f"cannot reach the store {mask_url(self.url)}:"
                    f" {_one_line(mask_url(str(exc)))}") from exc
        return conn

    def new_connection(self) -> Any:
        conn = self._connect(autocommit=False)
        self.own_pids.add(conn.info.backend_pid)
        return conn

    def make_engine(self) -> Engine:
        from sqlalchemy import create_engine

        # pre_ping: a pooled connection that died with a server restart is replaced instead
        # of failing the cold path that picks it up.
        return create_engine(sqlalchemy_url(self.url), pool_pre_ping=True,
                             connect_args=connect_args())

    # -- per-thread connections ----------------------------------------------------------
    def drop_connection(self) -> None:
        super().drop_connection()
        self._drop_call_connection()

    def _drop_call_connection(self) -> None:
        """Forget this thread's autocommit connection. Its server session may still be running
        a call whose reply never came, and would then commit it on its own: `fence_orphans`
        ends such sessions before anyone reasons about what is committed."""
        conn = getattr(self.local, "call_conn", None)
        self.local.call_conn = None
        if conn is None:
            return
        session = getattr(self.local, "call_session", None)
        if session is not None:
            with self.conns_lock:
                self.orphans.append((int(session[0]), str(session[1])))
        self.discard(conn)

    def close(self) -> None:
        self.listener_stop.set()
        listener = self.listener
        if listener is not None and listener is not threading.current_thread():
            listener.join(2.0)
        self.listener = None
        super().close()

    def fence_orphans(self, timeout: float) -> int:
        """Terminate server sessions of lost autocommit connections that still exist, and wait
        until they are gone (their last call then either committed or never will). Returns how
        many were still there. Raises StoreUnavailableError while the server is away."""
        with self.conns_lock:
            orphans, self.orphans = self.orphans, []
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
            with self.conns_lock:
                self.orphans.extend(orphans)
            raise
        return found

    # -- errors --------------------------------------------------------------------------
    def _roll_back(self, conn: Any, exc: BaseException) -> None:
        """After a failed transaction: a dead connection surfaces as StoreUnavailableError,
        a live one is rolled back (or dropped if even that fails)."""
        if is_disconnect(conn, exc) and isinstance(exc, Exception):
            raise self._lost(exc) from exc
        try:
            conn.rollback()
        except Exception:
            self.drop_connection()

    def _lost(self, exc: BaseException) -> StoreUnavailableError:
        """Forget this thread's dead connection; the next transaction opens a new one."""
        self.drop_connection()
        return self._lost_error(exc)

    def _lost_error(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"lost the connection to the store {mask_url(self.url)}: "
            f"{mask_url(' '.join(str(exc).split()))}")

    # -- transactions --------------------------------------------------------------------
    @contextmanager
    def tx(self) -> Iterator[Tx]:
        local = self.local
        conn = self.connection()
        tx = Tx(self.store, conn)
        local.open_tx = tx
        try:
            yield tx
            if tx.wake:
                # Delivered to listeners at commit, once per transaction however many rows.
                tx.cur.execute(f"NOTIFY {NOTIFY_CHANNEL}")
            conn.commit()
        except BaseException as exc:
            self._roll_back(conn, exc)
            if is_conflict(exc):
                raise _conflict(exc) from exc
            raise
        finally:
            local.open_tx = None
        if tx.wake:
            self.waker.notify()

    @contextmanager
    def snapshot(self) -> Iterator[Tx]:
        with self.read() as tx:
            tx.run("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield tx

    @contextmanager
    def read(self) -> Iterator[Tx]:
        conn = self.connection()
        tx = Tx(self.store, conn)
        try:
            yield tx
        except BaseException as exc:
            self._roll_back(conn, exc)
            raise
        try:
            conn.rollback()
        except Exception as exc:
            raise self._lost(exc) from exc

    def call(self, sql: str, params: Params, *, wake: bool) -> list[Row] | None:
        """One statement as a transaction of its own, in one round trip: for server-side
        functions that do a whole transaction's work. It runs on a second connection of this
        thread, kept in autocommit. None when a transaction is open on this thread (the
        caller takes its general path, inside that transaction)."""
        local = self.local
        if self.open_tx() is not None:
            return None
        conn = getattr(local, "call_conn", None)
        if conn is None:
            conn = self._connect(autocommit=True)
            self.own_pids.add(conn.info.backend_pid)
            local.call_session = conn.execute(
                "SELECT pg_backend_pid(), CAST(backend_start AS text) FROM pg_stat_activity"
                " WHERE pid = pg_backend_pid()").fetchone()
            with self.conns_lock:
                self.conns.append(conn)
            local.call_conn = conn
            local.call_cur = conn.cursor()
        try:
            cur = local.call_cur
            cur.execute(to_pyformat(sql), params)
            rows = [tuple(r) for r in cur.fetchall()]
        except Exception as exc:
            if is_disconnect(conn, exc):
                self._drop_call_connection()
                raise self._lost_error(exc) from exc
            if is_conflict(exc):
                raise _conflict(exc) from exc
            raise
        if wake:
            self.waker.notify()
        return rows

    def many_returning(self, cur: Any, sql: str, seq: Sequence[Params]) -> list[Row]:
        # psycopg pipelines the statements and keeps one result set per parameter set.
        out: list[Row] = []
        cur.executemany(to_pyformat(sql), seq, returning=True)
        while True:
            out.extend(tuple(r) for r in cur.fetchall())
            if not cur.nextset():
                return out

    def insert_rows(self, tx: Tx, insert: RowsInsert, rows: Sequence[dict[str, Any]]) -> None:
        if len(rows) >= BULK_FROM:
            tx.run(_recordset_sql(insert), {"rows": json.dumps(list(rows))})
        else:
            tx.many(insert.values, rows)

    # -- locks ---------------------------------------------------------------------------
    def lock_runs(self, tx: Tx, run_ids: Iterable[int]) -> None:
        """Every transaction of the general path that changes task runs takes its runs'
        advisory locks (exclusive) and then their rows FOR UPDATE, first and in one order (a
        cancel, a finish, a claim, a retry), so two transactions cannot wait on each other in
        a cycle. The server step takes the advisory locks shared; PostgreSQL queues lock
        requests fairly, so an exclusive request is not starved by a stream of steps. A claim
        that found a run held skips it, so every holder wakes all agents when it commits."""
        ids = sorted({int(i) for i in run_ids} - tx.locked_runs)
        if ids:
            self._advisory_lock_runs(tx, ids)
            tx.all("SELECT id FROM runs WHERE id = ANY(:ids) ORDER BY id FOR UPDATE",
                   {"ids": ids})

    def try_lock_runs(self, tx: Tx, run_ids: Iterable[int]) -> set[int]:
        """A claim's locks on the runs it may take task runs from, taken once its finishes
        (and maybe pool rows) took theirs: waiting for a run there could close a cycle (this
        transaction holds run A and waits for B while B's holder waits for A, or for the pool
        rows), so a run another transaction holds is left to a later step, as the server step
        leaves it."""
        ids = sorted({int(i) for i in run_ids} - tx.locked_runs)
        if not ids:
            return set()
        got = sorted(int(r) for (r,) in tx.all(_TRY_ADVISORY_LOCK_RUNS, {"ids": ids}))
        if got:
            tx.locked_runs.update(got)
            tx.wake = True
            tx.all("SELECT id FROM runs WHERE id = ANY(:ids) ORDER BY id FOR UPDATE",
                   {"ids": got})
        return set(got)

    def lock_run_for_read(self, tx: Tx, run_id: int) -> str:
        if run_id in tx.locked_runs:
            return ""
        self._advisory_lock_runs(tx, [run_id])
        return " FOR UPDATE"

    def _advisory_lock_runs(self, tx: Tx, ids: list[int]) -> None:
        """The advisory part of `lock_runs`; the caller then takes the rows FOR UPDATE."""
        tx.all(_ADVISORY_LOCK_RUNS, {"ids": ids})
        tx.locked_runs.update(ids)
        tx.wake = True

    def lock_row(self, tx: Tx, table: str, row_id: int) -> None:
        tx.one(f"SELECT id FROM {table} WHERE id = :i FOR UPDATE", {"i": row_id})

    def serialize_inserts(self, tx: Tx, table: str) -> bool:
        tx.run(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")
        return True

    # -- other processes -----------------------------------------------------------------
    def wait(self, seen: int, timeout: float, poll: float) -> int:
        self.listen()
        return self.waker.wait(seen, timeout)

    def listen(self) -> None:
        """Start (once) the thread that turns other processes' NOTIFYs into in-process wakes.

        It holds one extra connection that only listens: no queries while idle. Whenever it
        (re)connects it wakes every waiter, since notifications may have been missed.
        """
        if self.listener is not None:
            return
        with self.conns_lock:
            if self.listener is not None:
                return
            self.listener_stop.clear()
            thread = threading.Thread(target=self._listen_loop, name="taskplan-listen",
                                      daemon=True)
            self.listener = thread
        thread.start()

    def wait_listening(self, timeout: float) -> bool:
        self.listen()
        return self.listening.wait(timeout)

    def _listen_loop(self) -> None:
        backoff = Backoff()
        stop = self.listener_stop
        while not stop.is_set():
            try:
                conn = self._connect(autocommit=True)
            except StoreUnavailableError:
                stop.wait(backoff.next())
                continue
            try:
                conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                self.listening.set()
                backoff.reset()
                self.waker.notify()  # whatever happened while we were not listening
                own = self.own_pids
                while not stop.is_set():
                    # Returns every 0.25 s to look at `stop`: a select() on the socket, not a
                    # query. Each notification wakes the waiters at once.
                    for note in conn.notifies(timeout=0.25):
                        if note.pid not in own:
                            self.waker.notify()
            except Exception as exc:  # the server went away: reconnect with backoff
                self.listening.clear()
                if not stop.is_set():
                    log.warning("store listener lost its connection, reconnecting: %s",
                                mask_url(" ".join(str(exc).split())))
                    stop.wait(backoff.delay)  # the first delay again: it was listening
            finally:
                try:
                    conn.close()
                except Exception:
                    pass
        self.listening.clear()
