"""`sql` tasks: a statement, a script or a `CALL` on one of the job's named connections.

- The connection's URL comes from the job (`connections:`), with `${VAR}` read from the
  environment when the attempt runs; a missing variable fails the attempt with a clear reason.
  SQLAlchemy engines are cached per URL (postgresql -> psycopg 3, mysql -> PyMySQL).
- Values reach the server only through binds: `:name` is a run parameter, else `:item_<col>` /
  `:item` from the foreach item. Identifiers go through the `ident` template filter, quoted by
  the target dialect; the executor renders the text itself for that reason.
- A script is split into statements (see sqltext.py) and run in autocommit mode, one statement
  after the other, so `CALL` of procedures that commit, `VACUUM` and `REFRESH ... CONCURRENTLY`
  work. Write `BEGIN; ...; COMMIT;` for an atomic script.
- The attempt log gets each statement's rowcount, up to 100 result rows and the server's
  messages (PostgreSQL notices, MariaDB/MySQL warnings).
- Timeout and cancel cancel the statement on the server (psycopg `cancel_safe`, MySQL
  `KILL QUERY` from a second connection, SQLite `interrupt`), repeated until it stops. A
  server that does not answer (hung, or cut off by a network that drops packets instead of
  closing connections) stops neither the statement nor the cancel: SEVER_AFTER seconds after
  the cancel the connection's socket is shut down, so the attempt ends all the same. The
  timeout counts from the attempt's start and bounds connecting too (the driver's
  `connect_timeout`), and a pooled connection is checked (pinged) under the same watch, so no
  phase of an attempt can outlast its timeout by more than SEVER_AFTER.
- Passwords never reach the log or the error: every message goes through `mask_url`.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import math
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from time import monotonic as time_monotonic
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection
from sqlalchemy.pool import NullPool

from taskplan.executors.base import (
    CANCELLED,
    Cancellation,
    ExecRequest,
    ExecResult,
    LogSink,
    SqlSetupError,
    format_seconds,
    timed_out_result,
)
from taskplan.executors.sqltext import CODE, protect_literals, segments, split_statements
from taskplan.redact import mask_url, remember_secret
from taskplan.spec.templating import error_line, render

MAX_ROWS = 100
RECANCEL_EVERY = 0.5  # seconds between repeated cancels while a statement keeps running
SEVER_AFTER = 3.0  # seconds a cancelled statement has to stop before its connection is cut
logger = logging.getLogger(__name__)
_VAR = re.compile(r"\$\{(?:file:(?P<file>[^}]+)|(?P<var>[A-Za-z_][A-Za-z0-9_]*))\}")
_PASSWORD_SPAN = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:(?P<pw>[^@\s]*)@")


# -- connections ---------------------------------------------------------------------------
def expand_url(url: str, connection: str) -> str:
    """`${VAR}` -> its value from the environment, `${file:/path}` -> the file's content
    (without its final line end); a missing one is an error naming it (never its value).

    Values read from files, and environment values standing for the password, are remembered
    as secrets, so that `mask_url` hides them wherever they show up later."""
    pw = _PASSWORD_SPAN.match(url)
    pw_span = pw.span("pw") if pw else (0, 0)

    def sub(m: re.Match[str]) -> str:
        if m["file"] is not None:
            try:
                with open(m["file"], encoding="utf-8") as fh:
                    value = fh.read().rstrip("\r\n")
            except OSError as exc:
                raise SqlSetupError(f"connection {connection!r}: cannot read secret file"
                                    f" {m['file']}: {exc.strerror or exc}") from None
            remember_secret(value)
            return value
        found = os.environ.get(m["var"])
        if found is None:
            raise SqlSetupError(
                f"connection {connection!r}: environment variable {m['var']} is not set")
        if pw_span[0] <= m.start() < pw_span[1]:
            remember_secret(found)
        return found

    return _VAR.sub(sub, url)


def driver_url(url: str) -> str:
    """The SQLAlchemy URL: PostgreSQL through psycopg 3, MySQL/MariaDB through PyMySQL."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    base = scheme.lower()
    if base in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + rest
    if base in ("mysql", "mariadb"):
        return "mysql+pymysql://" + rest
    return url


_engines: dict[str, Engine] = {}
_engines_lock = threading.Lock()


def engine_for(url: str) -> Engine:
    """One engine (and connection pool) per URL, shared by every slot of the process."""
    engine = _engines.get(url)
    if engine is not None:
        return engine
    with _engines_lock:
        engine = _engines.get(url)
        if engine is None:
            # An in-memory SQLite database lives as long as its connection: no pool, so each
            # attempt gets a fresh one (SQLAlchemy's pool for it takes no max_overflow).
            pooling: dict[str, Any] = (
                {"poolclass": NullPool} if _in_memory(url) else {"max_overflow": -1})
            try:
                # No pool_pre_ping: the executor pings a reused connection itself, under the
                # attempt's timeout (a ping to a hung server would otherwise wait forever).
                engine = create_engine(driver_url(url), isolation_level="AUTOCOMMIT",
                                       **pooling)
            except Exception as exc:
                raise SqlSetupError(f"bad connection URL {mask_url(url)}: "
                                    f"{mask_url(_first_line(exc))}") from exc
            event.listen(engine, "do_connect", _bound_connect)
            event.listen(engine, "connect", _mark_fresh)
            _engines[url] = engine
    return engine


_connecting = threading.local()  # .deadline: the monotonic time a connect must end by, or None


def _bound_connect(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    """Connecting ends by the attempt's deadline: the driver's connect_timeout (libpq counts
    whole seconds, at least 2), never longer than one the URL sets. PyMySQL's bounds only the
    TCP connect, not the server's greeting: a read timeout bounds that, for the connect only."""
    deadline = getattr(_connecting, "deadline", None)
    if deadline is None or dialect.name not in ("postgresql", "mysql"):
        return
    left = max(deadline - time_monotonic(), 0.001)
    if dialect.name == "postgresql":
        left = max(2, math.ceil(left))
    # (PyMySQL's own default is 10 s, and it refuses more than a year.)
    default = 10 if dialect.name == "mysql" else None
    if left < _seconds(cparams.get("connect_timeout", default)):
        cparams["connect_timeout"] = left
    if dialect.name == "mysql" and left < _seconds(cparams.get("read_timeout")):
        _connecting.read_timeout = (cparams.get("read_timeout"),)  # what to give back after
        cparams["read_timeout"] = left


CLIENT_CHECK = "1s"  # PostgreSQL 14+: how often a running statement checks that we are there


def _watch_client(dbapi_connection: Any) -> None:
    """PostgreSQL runs a statement to its end (and commits it) after its client died, unless
    told to check: an agent killed with SIGKILL would leave its statement running while the
    task is retried elsewhere, twice at once. PostgreSQL 14 and later end it within
    CLIENT_CHECK of the client going (client_connection_check_interval); older ones cannot."""
    info = getattr(dbapi_connection, "info", None)
    if int(getattr(info, "server_version", 0) or 0) < 140000:
        return  # (not PostgreSQL, or before 14)
    try:
        dbapi_connection.execute(f"SET client_connection_check_interval = '{CLIENT_CHECK}'")
        if not dbapi_connection.autocommit:
            dbapi_connection.commit()
    except Exception as exc:  # a pooler that refuses it: the statement is merely not watched
        logger.debug("cannot set client_connection_check_interval: %s",
                     mask_url(_first_line(exc)))
        if not dbapi_connection.autocommit:
            dbapi_connection.rollback()


def _seconds(value: Any) -> float:
    try:
        return float(value) if value is not None else math.inf
    except (TypeError, ValueError):
        return math.inf


def _server_text_loaders(dbapi_connection: Any) -> None:
    """PostgreSQL values Python's types cannot hold ('infinity' and '-infinity' timestamps and
    dates, BC dates, years past 9999; a timestamptz in a DateStyle other than ISO) failed the
    whole statement (`timestamp too large`), and
    an interval came back as Python's `-1 day, 23:00:00`, which no server reads back. Such a
    date comes back as PostgreSQL's own text, and so does every interval ('1 mon 02:00:00') and
    bytea ('\\x00ff'), so a foreach item or a result holds what the server wrote and binds
    back to it."""
    if not type(dbapi_connection).__module__.startswith("psycopg"):
        return
    from psycopg import DataError
    from psycopg.adapt import Loader
    from psycopg.pq import Format

    adapters = dbapi_connection.adapters
    for name in ("date", "timestamp", "timestamptz"):
        oid = adapters.types[name].oid
        usual = adapters.get_loader(oid, Format.TEXT)
        if usual is None:
            continue

        class Lenient(Loader):
            inner_class: Any = usual

            def __init__(self, oid: int, context: Any = None) -> None:
                super().__init__(oid, context)
                self.inner = self.inner_class(oid, context)

            def load(self, data: Any) -> Any:
                try:
                    return self.inner.load(data)
                except (DataError, NotImplementedError):
                    # NotImplementedError: a timestamptz in a DateStyle other than ISO
                    # (German, SQL, Postgres), which psycopg does not read.
                    return bytes(data).decode()

        adapters.register_loader(oid, Lenient)

    class Text(Loader):
        def load(self, data: Any) -> Any:
            return bytes(data).decode()

    adapters.register_loader(adapters.types["interval"].oid, Text)
    # (and bytea as its hex text, `\x00ff`, which binds back as those bytes: bare hex was
    # bound back as the text's own bytes)
    adapters.register_loader(adapters.types["bytea"].oid, Text)


def _mark_fresh(dbapi_connection: Any, record: Any) -> None:
    record.info["taskplan_fresh"] = True
    _watch_client(dbapi_connection)
    _server_text_loaders(dbapi_connection)
    given = getattr(_connecting, "read_timeout", None)
    if given is not None:  # (PyMySQL: see _bound_connect)
        _connecting.read_timeout = None
        dbapi_connection._read_timeout = None if given[0] is None else float(given[0])


def _in_memory(url: str) -> bool:
    scheme, _, rest = url.partition("://")
    return scheme.lower().startswith("sqlite") and rest.split("?", 1)[0] in ("", "/", "/:memory:")


def connection_url(request: ExecRequest) -> tuple[str, str]:
    """(connection name, expanded URL) of a sql task."""
    name = request.spec.connection or ""
    if request.connection_url is None:
        raise SqlSetupError(f"no connection {name!r}: neither the job nor the shared"
                            " connections declare it")
    return name, expand_url(request.connection_url, name)


# -- binds ---------------------------------------------------------------------------------
def _bind_value(value: Any) -> Any:
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, separators=(",", ":"))
    return value


def bind_values(names: list[str] | set[str], params: Mapping[str, Any], item: Any
                ) -> dict[str, Any]:
    """Values for `:name` binds: run parameters first, then `item_<col>` / `item`."""
    out: dict[str, Any] = {}
    for name in names:
        if name in params:
            out[name] = _bind_value(params[name])
        elif name == "item" and item is not None:
            out[name] = _bind_value(item)
        elif (name.startswith("item_") and isinstance(item, Mapping)
              and name[len("item_"):] in item):
            out[name] = _bind_value(item[name[len("item_"):]])
        else:
            have = sorted(params) + (["item"] if item is not None else []) + (
                [f"item_{c}" for c in item] if isinstance(item, Mapping) else [])
            raise SqlSetupError(f"no value for bind :{name} (known: "
                                + (", ".join(have) or "none") + ")")
    return out


def prepare(sql: str, dialect: str) -> Any:
    """A SQLAlchemy text() clause whose binds are only the `:name`s written in code."""
    return text(protect_literals(sql, dialect))


def bind_names(clause: Any) -> list[str]:
    return list(clause._bindparams)


# -- values in logs and results --------------------------------------------------------------
def json_safe(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        # (a MariaDB/MySQL TIME: [-]H:MM:SS as the server writes it, hours past 24 too)
        micros = abs(value) // timedelta(microseconds=1)
        secs, micro = divmod(micros, 1_000_000)
        text_ = (f"{'-' if value < timedelta(0) else ''}{secs // 3600:02d}"
                 f":{secs // 60 % 60:02d}:{secs % 60:02d}")
        return text_ + (f".{micro:06d}" if micro else "")
    if isinstance(value, Decimal):
        # A whole number stays exact however long (a NUMERIC(30) key binds back as itself).
        # (Past 4000 digits: a float, as JSON text of Python refuses such an int.)
        return int(value) if value.is_finite() and value == value.to_integral_value() \
            and value.adjusted() < 4000 else float(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return str(value)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    return str(json_safe(value)) if not isinstance(value, str) else value


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    text_ = str(orig if orig is not None else exc).strip()
    return text_.splitlines()[0] if text_ else type(exc).__name__


# -- interrupting a running statement ----------------------------------------------------------
class _Interrupter:
    """Cancels the statement running on `conn` from another thread, on timeout or cancel.

    An attempt that ends on its own starts no thread: its timeout is a deadline on the
    process's one watchdog (`_DEADLINES`) and a cancel is a callback. Either starts the thread
    that cancels the statement, again every RECANCEL_EVERY seconds, until the statements are
    over. (A thread per attempt cost a SQL task a fifth of its time: starting it and joining it
    are two thread wake-ups.)"""

    def __init__(self, engine: Engine, conn: Connection) -> None:
        self.engine = engine
        driver: Any = conn.connection.driver_connection
        self.driver: Any = driver
        self.dbapi: Any = conn.connection.dbapi_connection
        self.family = engine.dialect.name
        self.thread_id: int | None = None
        if self.family == "mysql":
            self.thread_id = int(driver.thread_id())
        self.reason: str | None = None
        self.severed = False  # the connection was cut: the server did not answer in time
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._canceller: threading.Thread | None = None
        self._unsever: Callable[[], None] = _nothing

    def fire(self, reason: str) -> None:
        with self._lock:
            if self.reason is not None or self.done.is_set():
                return
            self.reason = reason
            if self.family != "sqlite":  # (an interrupt stops SQLite: no server to wait for)
                try:
                    self._unsever = _DEADLINES.call_after(SEVER_AFTER, self._sever)
                except RuntimeError as exc:
                    logger.warning("cannot watch a cancelled SQL statement (%s)", exc)
            canceller = threading.Thread(target=self._cancel_until_done, daemon=True,
                                         name="taskplan-sql-cancel")
            try:
                canceller.start()
            except RuntimeError as exc:  # no thread to be had: cancel once, from here
                logger.warning("cannot start a thread to cancel a SQL statement (%s);"
                               " cancelling it once", exc)
                self._cancel_now()  # under the lock: finish() waits for it
                return
            self._canceller = canceller

    def finish(self) -> None:
        """The statements are over: stop cancelling (a later cancel or timeout changes
        nothing), and wait until no cancel can reach the connection any more. A cut connection
        is not waited for: it is never used again, and its cancel may be waiting for a server
        that does not answer."""
        with self._lock:
            self.done.set()
            canceller = self._canceller
            severed = self.severed
        self._unsever()
        if canceller is not None and not severed:
            canceller.join()

    def _sever(self) -> None:
        """The statement outlived its cancel by SEVER_AFTER: shut the connection's socket
        down, so the driver's wait for the server's answer ends with an error."""
        with self._lock:
            if self.done.is_set():
                return
            self.severed = True
            try:
                if self.family == "postgresql":
                    fd = self.driver.pgconn.socket
                    with socket.socket(fileno=os.dup(fd)) as sock:
                        sock.shutdown(socket.SHUT_RDWR)
                elif self.family == "mysql" and self.driver._sock is not None:
                    self.driver._sock.shutdown(socket.SHUT_RDWR)
            except Exception as exc:
                logger.warning("cannot close the connection of a cancelled SQL statement: %s",
                               mask_url(_first_line(exc)))

    def _cancel_until_done(self) -> None:
        while not self.done.is_set():
            self._cancel_now()
            self.done.wait(RECANCEL_EVERY)

    def _cancel_now(self) -> None:
        try:
            if self.family == "postgresql":
                cancel_safe = getattr(self.driver, "cancel_safe", None)
                if cancel_safe is not None:
                    cancel_safe(timeout=SEVER_AFTER)
                else:
                    self.driver.cancel()
            elif self.family == "mysql":
                with _pinged(self.engine) as other:
                    other.exec_driver_sql(f"KILL QUERY {int(self.thread_id or 0)}")
            elif self.family == "sqlite":
                self.driver.interrupt()
        except Exception as exc:
            logger.warning("cannot cancel a SQL statement: %s", mask_url(_first_line(exc)))


class _Deadlines:
    """The timeouts of the process's running SQL attempts (and the cuts of connections whose
    statement outlived its cancel), watched by one thread (started with the first attempt that
    has a timeout, then asleep until the nearest deadline)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []
        self._waiting: dict[int, Callable[[], None]] = {}
        self._keys = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, stop: _Interrupter, timeout: float | None) -> Callable[[], None]:
        """Fire `stop` with "timeout" once `timeout` seconds have passed; returns what ends
        the watch."""
        if timeout is None:
            return _nothing
        return self.call_after(timeout, lambda: stop.fire("timeout"))

    def call_after(self, seconds: float, action: Callable[[], None]) -> Callable[[], None]:
        """Call `action` on the watchdog's thread once `seconds` have passed; returns what
        calls it off."""
        key = next(self._keys)
        deadline = time_monotonic() + seconds
        with self._cond:
            self._waiting[key] = action
            if len(self._heap) > 64 + 2 * len(self._waiting):  # ended watches pile up
                self._heap = [e for e in self._heap if e[1] in self._waiting]
                heapq.heapify(self._heap)
            heapq.heappush(self._heap, (deadline, key))
            if self._thread is None:
                thread = threading.Thread(target=self._run, daemon=True,
                                          name="taskplan-sql-deadlines")
                try:
                    thread.start()
                except RuntimeError:
                    self._waiting.pop(key, None)
                    raise  # the attempt fails; the next one tries to start it again
                self._thread = thread
            elif self._heap[0][1] == key:
                self._cond.notify()

        def unwatch() -> None:
            with self._cond:
                self._waiting.pop(key, None)

        return unwatch

    def _run(self) -> None:
        while True:
            due: list[Callable[[], None]] = []
            with self._cond:
                now = time_monotonic()
                while self._heap and (self._heap[0][1] not in self._waiting
                                      or self._heap[0][0] <= now):
                    action = self._waiting.pop(heapq.heappop(self._heap)[1], None)
                    if action is not None:
                        due.append(action)
                if not due:
                    self._cond.wait(self._heap[0][0] - now if self._heap else None)
                    continue
            for action in due:
                try:
                    action()
                except Exception:  # the watchdog must outlive any one attempt
                    logger.exception("cannot time out a SQL statement")


def _nothing() -> None:
    return None


_DEADLINES = _Deadlines()


def _refuse_client_commands(statements: list[str], dialect: str) -> None:
    """`DELIMITER` is the mysql client's own command: a server answers it with a bare syntax
    error, so say what to write instead before anything runs."""
    for n, statement in enumerate(statements, 1):
        # Its first word of code: a comment before the line (as in a dump) does not hide it.
        words = next((t.split(None, 1) for k, t in segments(statement, dialect)
                      if k == CODE and t.strip()), [""])
        if words[0].upper() == "DELIMITER":
            where = f"statement {n} of {len(statements)}: " if len(statements) > 1 else ""
            raise SqlSetupError(
                f"{where}DELIMITER is a mysql client command, not SQL: write the routine's"
                " definition without it, ended by ';' (its BEGIN ... END is sent whole)")


# -- the executor ---------------------------------------------------------------------------
class SqlExecutor:
    def execute(self, request: ExecRequest, log: LogSink, cancel: Cancellation) -> ExecResult:
        if cancel.is_set():
            return CANCELLED
        try:
            name, url = connection_url(request)
            engine = engine_for(url)
            dialect = engine.dialect.name
            sql = request.command
            if not isinstance(sql, str):
                raise SqlSetupError("a sql task takes one string")
            if request.template_values is not None:
                sql = render(sql, request.template_values,
                             quote_ident=engine.dialect.identifier_preparer.quote)
            statements = split_statements(sql, dialect)
            if not statements:
                raise SqlSetupError("no SQL statement to run")
            _refuse_client_commands(statements, dialect)
            clauses = [prepare(s, dialect) for s in statements]
            binds = [bind_values(bind_names(c), request.context.params, request.context.item)
                     for c in clauses]
        except Exception as exc:
            message = mask_url(str(exc) if isinstance(exc, SqlSetupError)
                               else error_line(exc) or f"{type(exc).__name__}: {exc}")
            log.write(f"taskplan: {message}\n")
            return ExecResult(ok=False, error=message)
        timeout = request.timeout
        deadline = None if timeout is None else time_monotonic() + timeout
        ping = dialect != "sqlite"
        while True:
            _connecting.deadline = deadline
            try:
                conn = engine.connect()
            except Exception as exc:
                if deadline is not None and time_monotonic() >= deadline:
                    assert timeout is not None
                    log.write(f"taskplan: timed out after {format_seconds(timeout)} while"
                              f" connecting to {name!r}\n")
                    return timed_out_result(timeout)
                message = mask_url(f"cannot connect to {name!r} ({url}): {_first_line(exc)}")
                log.write(f"taskplan: {message}\n")
                return ExecResult(ok=False, error=message)
            finally:
                _connecting.deadline = _connecting.read_timeout = None
            with conn:
                # A connection from the pool is pinged first (a fresh one is not): the server
                # may have closed it meanwhile, and then another is taken. That one may come
                # from the pool too (a restarted server closed them all), so it is pinged as
                # well; each that fails is dropped, so the pool runs out of them.
                left = None if deadline is None else deadline - time_monotonic()
                done = self._run(engine, conn, statements, clauses, binds, timeout, left,
                                 not _fresh(conn) and ping, log, cancel)
            if done is not None:
                return done

    def _run(self, engine: Engine, conn: Connection, statements: list[str], clauses: list[Any],
             binds: list[dict[str, Any]], timeout: float | None, left: float | None,
             ping: bool, log: LogSink, cancel: Cancellation) -> ExecResult | None:
        """The statements, `timeout` (with `left` of it to go) watched; None when the pooled
        connection failed its ping (the caller takes a new one)."""
        stop = _Interrupter(engine, conn)
        unhook_notices = _hook_notices(stop, log)
        unhook = cancel.on_cancel(lambda: stop.fire("cancel"))
        unwatch = _nothing
        result: dict[str, Any] = {}
        failed: str | None = None
        stale = False
        reset = False  # the session was made new again for the pool
        try:
            if left is not None and left <= 0:
                stop.fire("timeout")
            else:
                unwatch = _DEADLINES.watch(stop, left)
            if ping and stop.reason is None:
                try:
                    engine.dialect.do_ping(stop.dbapi)
                except Exception:
                    stale = stop.reason is None
            for n, (clause, values) in enumerate(zip(clauses, binds, strict=True), 1):
                if stop.reason is not None or stale:
                    break
                if len(statements) > 1:
                    log.write(f"-- statement {n} of {len(statements)}\n")
                try:
                    result = self._statement(conn, clause, values, log)
                except Exception as exc:
                    if stop.reason is not None:
                        break
                    where = f"statement {n} of {len(statements)}: " if len(statements) > 1 \
                        else ""
                    failed = mask_url(where + _first_line(exc))
                    log.write(mask_url(f"error: {_first_line(exc)}\n"))
                    break
                if stop.family == "mysql":
                    _mysql_warnings(conn, log)
            else:
                if stop.reason is None and not stale and _in_transaction(stop):
                    # Back in the pool, its connection would roll the work back unseen.
                    failed = OPEN_TRANSACTION
                    log.write(f"error: {failed}\n")
                elif stop.reason is None and not stale:
                    # Still under the attempt's timeout: a server that hangs now cannot hold
                    # the attempt past it.
                    reset = _reset_session(stop)
        finally:
            unwatch()
            stop.finish()
            unhook()
            unhook_notices()
            if stop.reason is not None or failed is not None or stale or not reset:
                conn.invalidate()  # never hand a half-cancelled session back to the pool
        how = ("the server did not answer the cancel: connection closed" if stop.severed
               else "statement cancelled on the server")
        if stop.reason == "cancel":
            log.write(f"taskplan: cancelled; {how}\n")
            return CANCELLED
        if stop.reason == "timeout":
            assert timeout is not None
            log.write(f"taskplan: timed out after {format_seconds(timeout)}; {how}\n")
            return timed_out_result(timeout)
        if stale:
            return None
        if failed is not None:
            return ExecResult(ok=False, error=failed)
        return ExecResult(ok=True, result=result)

    def _statement(self, conn: Connection, clause: Any, values: dict[str, Any], log: LogSink
                   ) -> dict[str, Any]:
        res = conn.execute(clause, values)
        try:
            out: dict[str, Any] = {"rowcount": res.rowcount}
            if res.returns_rows:
                cols = [str(c) for c in res.keys()]  # noqa: SIM118
                if conn.dialect.name == "mysql":
                    # Read from the driver's cursor: SQLAlchemy closes a result it finds
                    # empty, and PyMySQL's close skips the later result sets, the error
                    # of a procedure that failed after a SELECT included (logged, not raised).
                    rows = list(res.cursor.fetchmany(MAX_ROWS + 1))
                else:
                    rows = list(res.fetchmany(MAX_ROWS + 1))
                out["rows"] = _log_rows(cols, rows, log)
            log.write(f"rowcount: {res.rowcount}\n")
            if conn.dialect.name == "mysql" and res.returns_rows:
                _more_result_sets(res.cursor, log)
            return out
        finally:
            res.close()


_COM_RESET_CONNECTION = 0x1F  # MySQL 5.7.3+, MariaDB 10.2.4+
# DISCARD ALL but its DEALLOCATE ALL, which would drop the statements psycopg prepared on
# this connection while it keeps using them ("prepared statement _pg3_1 does not exist").
_PG_RESET = ("CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; UNLISTEN *;"
             " SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP;"
             " DISCARD SEQUENCES")


def _reset_session(stop: _Interrupter) -> bool:
    """Make a connection going back to the pool as a new session, so the next task (of any
    job on this URL) does not run under what this one set: `SET search_path`, `SET
    sql_mode`, `@variables`, temporary tables, PRAGMAs. False: it cannot be (then it is
    closed, and the next task connects afresh)."""
    try:
        if stop.family == "postgresql":
            stop.driver.execute(_PG_RESET)
            _watch_client(stop.dbapi)  # (RESET ALL undid it too)
            return True
        if stop.family == "mysql":
            driver = stop.driver
            driver._execute_command(_COM_RESET_CONNECTION, b"")
            driver._read_ok_packet()
            # The reset gives the session the server's defaults, the character set and
            # autocommit included: those the connection was opened with are set again.
            driver.set_character_set(driver.charset, driver.collation)
            driver.autocommit(True)
            return True
    except Exception as exc:
        logger.debug("cannot reset a pooled SQL session: %s", mask_url(_first_line(exc)))
        return False
    return False  # SQLite: a new connection costs less than finding what to undo


OPEN_TRANSACTION = ("the script ended inside a transaction it opened (no COMMIT after its"
                    " BEGIN): rolled back; end it with COMMIT (or ROLLBACK)")


def _in_transaction(stop: _Interrupter) -> bool:
    """Whether the session is inside a transaction the statements opened (autocommit is on,
    so only an explicit BEGIN / START TRANSACTION leaves one open)."""
    try:
        if stop.family == "postgresql":
            return int(stop.driver.info.transaction_status) != 0  # (not IDLE)
        if stop.family == "mysql":
            return bool((stop.driver.server_status or 0) & 1)  # SERVER_STATUS_IN_TRANS
        if stop.family == "sqlite":
            return bool(stop.driver.in_transaction)
    except Exception as exc:  # a driver that cannot say: as before, the pool rolls it back
        logger.debug("cannot read the transaction state: %s", mask_url(_first_line(exc)))
    return False


def _log_rows(cols: list[str], rows: list[Any], log: LogSink) -> list[Any]:
    """Logs up to MAX_ROWS of `rows` (MAX_ROWS + 1 fetched); returns them as JSON dicts."""
    more = len(rows) > MAX_ROWS
    rows = rows[:MAX_ROWS]
    log.write(" | ".join(cols) + "\n")
    for row in rows:
        log.write(" | ".join(_cell(v) for v in row) + "\n")
    if more:
        log.write(f"(only the first {MAX_ROWS} rows are shown)\n")
    return [json_safe(dict(zip(cols, row, strict=True))) for row in rows]


def _more_result_sets(cursor: Any, log: LogSink) -> None:
    """The result sets a MariaDB/MySQL procedure sent after its first (one per SELECT it
    ran) go to the log; reading them raises the error it ended with, if any."""
    k = 1
    while cursor.nextset():
        if cursor.description is None:  # (the CALL's own final status)
            continue
        k += 1
        log.write(f"-- result set {k}\n")
        cols = [str(d[0]) for d in cursor.description]
        _log_rows(cols, list(cursor.fetchmany(MAX_ROWS + 1)), log)
        log.write(f"rowcount: {cursor.rowcount}\n")


def _pinged(engine: Engine) -> Connection:
    """A connection, checked first if it comes from the pool (the server may have closed it
    meanwhile: then a new one), as pool_pre_ping would."""
    while True:
        conn = engine.connect()
        if _fresh(conn) or engine.dialect.name == "sqlite":
            return conn
        dbapi: Any = conn.connection.dbapi_connection
        try:
            engine.dialect.do_ping(dbapi)
        except Exception:
            conn.invalidate()  # (reconnects when next taken: the pool runs out of stale ones)
            conn.close()
            continue
        return conn


def _fresh(conn: Connection) -> bool:
    """Whether the connection was just made (not taken from the pool). Asked of every
    connection taken, used or not: a mark left on one would spare it the ping when it next
    comes from the pool, after the server may have closed it."""
    return bool(conn.connection.info.pop("taskplan_fresh", False))


def _hook_notices(stop: _Interrupter, log: LogSink) -> Callable[[], None]:
    """Send PostgreSQL notices (RAISE NOTICE, warnings) to the attempt log while it runs."""
    if stop.family != "postgresql":
        return lambda: None
    driver = stop.driver

    def handler(diag: Any) -> None:
        log.write(mask_url(f"{diag.severity or 'NOTICE'}: {diag.message_primary}\n"))

    driver.add_notice_handler(handler)
    return lambda: driver.remove_notice_handler(handler)


def _mysql_warnings(conn: Connection, log: LogSink) -> None:
    # The server's answer to the statement counts its own warnings; SHOW WARNINGS alone
    # would repeat an earlier statement's (kept until one that uses a table), another task's
    # on a pooled connection.
    last = getattr(conn.connection.dbapi_connection, "_result", None)
    if getattr(last, "warning_count", None) == 0:
        return
    try:
        for level, code, message in conn.exec_driver_sql("SHOW WARNINGS").fetchall():
            log.write(mask_url(f"{level} {code}: {message}\n"))
    except Exception as exc:  # the session may be gone after an error; the error says why
        logger.debug("SHOW WARNINGS failed: %s", mask_url(_first_line(exc)))


def stream_rows(url: str, sql: str, params: Mapping[str, Any], chunk: int = 5000
                ) -> Iterator[list[dict[str, Any]]]:
    """Rows of a query as JSON-safe dicts, `chunk` at a time, streamed from the server.

    For `foreach: {sql: ...}`: memory stays flat however many rows the query returns.
    """
    engine = engine_for(url)
    dialect = engine.dialect.name
    statements = split_statements(sql, dialect)
    if len(statements) != 1:
        raise SqlSetupError("a foreach query must be exactly one statement")
    clause = prepare(statements[0], dialect)
    values = bind_values(bind_names(clause), params, None)
    with _pinged(engine) as conn:
        # Server-side cursors need a transaction on PostgreSQL: leave autocommit for this one.
        conn = conn.execution_options(isolation_level="READ COMMITTED" if dialect != "sqlite"
                                      else "SERIALIZABLE",
                                      stream_results=True, max_row_buffer=chunk)
        with conn.begin():
            res = conn.execute(clause, values)
            if not res.returns_rows:
                raise SqlSetupError("a foreach query must return rows")
            cols = [str(c) for c in res.keys()]  # noqa: SIM118
            twice = next((c for c in cols if cols.count(c) > 1), None)
            if twice is not None:  # (a join's a.id, b.id: the item would keep one of them)
                raise SqlSetupError(f"the query returns {cols.count(twice)} columns named"
                                    f" {twice!r}: give each its own name (... AS another_name)")
            while True:
                rows = res.fetchmany(chunk)
                if not rows:
                    break
                yield [json_safe(dict(zip(cols, row, strict=True))) for row in rows]
