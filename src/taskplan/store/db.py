"""taskplan's database: opening it, schema upkeep, transactions and wake-ups.

The hot path (claim, finish, ready the dependants) runs named SQL on the DBAPI connection:
SQLAlchemy Core is used for the schema, migrations and cold paths only (docs/architecture.md has the
measured gap). SQL is written once with `:name` binds. Whatever differs between SQLite and
PostgreSQL is the store's `dialect` (store/dialects/), chosen here once.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from taskplan.errors import NoStoreError, StoreUnavailableError, StoreVersionError
from taskplan.store import migrate
from taskplan.store.dialects import Dialect, dialect_for
from taskplan.store.pgserver import NOTIFY_CHANNEL
from taskplan.store.resilience import Backoff, retrying  # re-exported for the daemons
from taskplan.store.tx import Params, Row, Tx
from taskplan.store.urls import check_store_url, mask_url
from taskplan.store.wake import Waker

if TYPE_CHECKING:
    from sqlalchemy import Engine

__all__ = ["NOTIFY_CHANNEL", "Backoff", "Dialect", "Params", "Row", "Store", "Tx", "Waker",
           "retrying"]


_T = TypeVar("_T")
_CREATE_HINT = "; `taskplan apply` or `taskplan run` creates one (or check --db)"


class Store:
    """taskplan's database: schema upkeep, per-thread connections, transactions, wake-ups.

    Everything that differs between backends is `self.dialect`; this class is the face the
    rest of taskplan uses.
    """

    def __init__(self, url: str, *, migrate_schema: bool = True, fresh: bool = True,
                 create: bool = True) -> None:
        """Open (and create or upgrade) the store at `url`.

        With create=False a store that does not exist yet is not created: UsageError
        "no store at ...", and nothing is written.
        """
        check_store_url(url)
        self.url = url
        self.waker = Waker()
        self.dialect: Dialect = dialect_for(self)
        self.backend: str = self.dialect.name
        self._engine: Engine | None = None
        missing = self.dialect.absent()
        if missing is not None and not create:
            raise NoStoreError(f"no store at {missing}{_CREATE_HINT}")
        current = False  # the peek read HEAD on this store's own connection
        if missing is None:
            # What the database holds is looked at first, without changing it: a read-only
            # command writes nothing, and no command touches a database that is not a store.
            revision, own = self._guarded(self._peek_revision)
            current = own and revision == migrate.HEAD
            if revision is None and not create:
                where = self.dialect.where()
                self.close()
                raise NoStoreError(f"no store at {where} (it holds no taskplan tables)"
                                   f"{_CREATE_HINT}")
            if revision is not None:
                self._refuse_unknown(revision)
        if migrate_schema and not current:
            self._guarded(self._bring_to_head, fresh)

    def _peek_revision(self) -> tuple[str | None, bool]:
        """The stored schema revision, read without changing the file (SQLite: a read-only
        connection, so a file that is not a store is not switched to WAL), and whether it was
        read on the store's own connection (PostgreSQL), so that it need not be read again."""
        probe = self.dialect.probe()
        own = probe is self.dialect.connection_if_open()
        try:
            return migrate.stored_revision(probe), own
        finally:
            if not own:
                probe.close()

    def _bring_to_head(self, fresh: bool) -> None:
        revision = migrate.stored_revision(self.connection())
        if revision == migrate.HEAD:
            return
        if revision is not None:  # (another process may have written it since the peek)
            self._refuse_unknown(revision)
        if not (fresh and self.dialect.create_fresh()):
            migrate.upgrade(self.engine)

    def _refuse_unknown(self, revision: str) -> None:
        why = migrate.refusal(revision, self.dialect.where())
        if why is not None:
            self.close()
            raise StoreVersionError(why)

    def _guarded(self, step: Callable[..., _T], *args: Any) -> _T:
        """A step of opening: a failure not already said in taskplan's words is the store
        being unavailable, with the driver's reason (secrets masked)."""
        try:
            return step(*args)
        except (StoreUnavailableError, StoreVersionError):
            raise
        except Exception as exc:
            fault = self.dialect.fault(exc)
            if fault is not None:
                raise fault from exc
            raise StoreUnavailableError(
                f"cannot open the store {mask_url(self.url)}: {mask_url(str(exc))}") from exc

    @property
    def engine(self) -> Engine:
        """SQLAlchemy engine for migrations and cold paths, created on first use."""
        if self._engine is None:
            self._engine = self.dialect.make_engine()
        return self._engine

    # -- connections ---------------------------------------------------------------------
    def connection(self) -> Any:
        """This thread's DBAPI connection (opened on first use)."""
        return self.dialect.connection()

    def drop_connection(self) -> None:
        """Forget this thread's connection(s); the next transaction opens new ones."""
        self.dialect.drop_connection()

    def fence_orphans(self, timeout: float = 30.0) -> int:
        """End server sessions of lost one-round-trip calls that still exist, and wait until
        they are gone (their last call then either committed or never will). Returns how
        many were still there (always 0 on SQLite). Raises StoreUnavailableError while the
        server is away."""
        return self.dialect.fence_orphans(timeout)

    def close(self) -> None:
        self.dialect.close()
        if self._engine is not None:
            self._engine.dispose()

    # -- transactions --------------------------------------------------------------------
    def tx(self) -> AbstractContextManager[Tx]:
        """A write transaction. Commits on success, rolls back on any exception. Inside an
        open transaction on the same thread it joins that one.

        A broken connection (server restart, network cut, full disk) is dropped and surfaces
        as StoreUnavailableError; the caller decides whether to retry. A commit that fails
        that way may or may not have been applied: callers' writes are fenced, so replaying
        them is safe. A deadlock or serialization failure is StoreConflictError.
        """
        joined = self.dialect.open_tx()
        return nullcontext(joined) if joined is not None else self.dialect.tx()

    def read(self) -> AbstractContextManager[Tx]:
        """A read-only transaction: one snapshot on SQLite; on PostgreSQL (READ COMMITTED)
        each statement sees what was committed before it, `snapshot` is one state throughout.

        Inside an open write transaction on the same thread it reads through that transaction
        (it shares the thread's connection, so ending a snapshot would end the write too).
        """
        joined = self.dialect.open_tx()
        return nullcontext(joined) if joined is not None else self.dialect.read()

    def snapshot(self) -> AbstractContextManager[Tx]:
        """`read` whose statements all see one committed state, on every backend: a view
        assembled from several queries (a run's task runs and why each waits) never mixes
        two states. PostgreSQL's reads are READ COMMITTED otherwise (each statement sees what
        was committed before it); SQLite's read transaction is one snapshot already."""
        joined = self.dialect.open_tx()
        return nullcontext(joined) if joined is not None else self.dialect.snapshot()

    def call(self, sql: str, params: Params, *, wake: bool) -> list[Row] | None:
        """One statement as a transaction of its own, in one round trip (PostgreSQL: for
        server-side functions that do a whole transaction's work). None when the backend has
        no such call or a transaction is open on this thread: the caller takes its general
        path."""
        return self.dialect.call(sql, params, wake=wake)

    # -- waiting for other processes -----------------------------------------------------
    def wait(self, seen: int, timeout: float, *, poll: float = 0.05) -> int:
        """Sleep until woken in-process, another process commits, or `timeout` passes.

        Returns the waker generation to pass back next time.
        """
        return self.dialect.wait(seen, timeout, poll)

    def listen(self) -> None:
        """Start (once) whatever turns other processes' commits into wake-ups."""
        self.dialect.listen()

    def wait_listening(self, timeout: float = 5.0) -> bool:
        """Block until other processes' wake-ups reach this one (for tests and benchmarks)."""
        return self.dialect.wait_listening(timeout)
