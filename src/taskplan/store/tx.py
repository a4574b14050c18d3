"""One open transaction on taskplan's store: thin helpers over a DBAPI cursor.

SQL is written once with `:name` binds; the store's dialect translates it for its driver.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskplan.store.db import Store

Row = tuple[Any, ...]
Params = dict[str, Any] | Sequence[Any]


class Tx:
    """One open transaction: thin helpers over a DBAPI cursor."""

    def __init__(self, store: Store, conn: Any) -> None:
        self.store = store
        self.dialect = store.dialect
        self.conn = conn
        self.cur = conn.cursor()
        # Looked up once here, not per statement: the hot path runs thousands of these.
        self._sql: Callable[[str], str] = self.dialect.translate
        self.wake = False  # set by operations whose effect other processes should see now
        self.locked_runs: set[int] = set()  # run rows this transaction holds FOR UPDATE

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

    def many_returning(self, sql: str, seq: Sequence[Params]) -> list[Row]:
        """executemany of an `INSERT/UPDATE ... RETURNING`: every returned row, in order."""
        if not seq:
            return []
        return self.dialect.many_returning(self.cur, sql, seq)
