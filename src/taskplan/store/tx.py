"""One open transaction on taskplan's store: thin helpers over a DBAPI cursor.

SQL is written once with `:name` binds; psycopg gets it translated to `%(name)s`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskplan.store.db import Store

Row = tuple[Any, ...]
Params = dict[str, Any] | Sequence[Any]

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_][A-Za-z0-9_]*)")


@lru_cache(maxsize=512)
def to_pyformat(sql: str) -> str:
    """`:name` binds -> `%(name)s` for psycopg; literal % doubled."""
    return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


class Tx:
    """One open transaction: thin helpers over a DBAPI cursor."""

    def __init__(self, store: Store, conn: Any) -> None:
        self.store = store
        self.conn = conn
        self.cur = conn.cursor()
        self.pg = store.backend == "postgresql"
        self.wake = False  # set by operations whose effect other processes should see now
        self.locked_runs: set[int] = set()  # run rows this transaction holds FOR UPDATE
        # Runs that ended as a side effect of another run's end (a sub-job's parent), for the
        # step to report with the runs it ended itself.
        self.ended_runs: list[tuple[int, str]] = []

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

    def many_returning(self, sql: str, seq: Sequence[Params]) -> list[Row]:
        """executemany of an `INSERT/UPDATE ... RETURNING`: every returned row, in order."""
        if not seq:
            return []
        out: list[Row] = []
        if self.pg:
            # psycopg pipelines the statements and keeps one result set per parameter set.
            self.cur.executemany(self._sql(sql), seq, returning=True)
            while True:
                out.extend(tuple(r) for r in self.cur.fetchall())
                if not self.cur.nextset():
                    return out
        # sqlite3's executemany refuses statements that return rows: one execute each.
        for params in seq:
            self.cur.execute(sql, params)
            out.extend(tuple(r) for r in self.cur.fetchall())
        return out
