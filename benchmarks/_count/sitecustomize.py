"""Loaded by an agent subprocess of the idle50 row (PYTHONPATH points here): counts the SQL
statements the process sends to its store, and writes the count to a file on SIGUSR1.

Only active when TASKPLAN_BENCH_COUNT names that file. SQLite: every statement seen by
`set_trace_callback` on every `sqlite3.connect` connection; BEGIN/COMMIT/ROLLBACK are
counted apart as transactions. PostgreSQL: every `psycopg.Cursor.execute` and each parameter
set of `executemany` (psycopg's implicit BEGIN and `commit()` are not statements sent this way;
the row reads transactions from pg_stat_database instead). "transactions" counts BEGINs;
COMMIT / ROLLBACK / END are counted nowhere.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from typing import Any

_PATH = os.environ.get("TASKPLAN_BENCH_COUNT")
_counts = {"statements": 0, "transactions": 0, "signals": 0}
_lock = threading.Lock()
_END_WORDS = ("COMMIT", "ROLLBACK", "END")


def _note(sql: str, n: int = 1) -> None:
    head = sql.lstrip()[:8].upper()
    if head.startswith(_END_WORDS):
        return
    key = "transactions" if head.startswith("BEGIN") else "statements"
    with _lock:
        _counts[key] += n


def _dump(_signum: int, _frame: Any) -> None:
    assert _PATH is not None
    with _lock:
        _counts["signals"] += 1
        data = dict(_counts, t=time.time())
    tmp = _PATH + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, _PATH)


def _install() -> None:
    import sqlite3

    real_connect = sqlite3.connect

    def connect(*args: Any, **kwargs: Any) -> Any:
        conn = real_connect(*args, **kwargs)
        conn.set_trace_callback(_note)
        return conn

    sqlite3.connect = connect
    try:
        import psycopg
    except ImportError:
        pass
    else:
        real_execute = psycopg.Cursor.execute
        real_many = psycopg.Cursor.executemany

        def execute(self: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            _note(str(query) if isinstance(query, str) else "SELECT")
            return real_execute(self, query, *args, **kwargs)

        def executemany(self: Any, query: Any, params_seq: Any, *args: Any, **kwargs: Any
                        ) -> Any:
            seq = list(params_seq)
            _note("SELECT", len(seq))
            return real_many(self, query, seq, *args, **kwargs)

        psycopg.Cursor.execute = execute  # type: ignore[method-assign]
        psycopg.Cursor.executemany = executemany  # type: ignore[method-assign]
    signal.signal(signal.SIGUSR1, _dump)


if _PATH:
    _install()
