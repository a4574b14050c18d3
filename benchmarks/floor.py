"""The floor: the fastest a single loop can claim and finish rows in the same kind of store.

No taskplan code. Plain sqlite3 on a file in WAL mode with synchronous=NORMAL, as the store
uses, and a table shaped like the hot part of task_runs. Each row costs two transactions,
each its own BEGIN IMMEDIATE ... COMMIT: one `UPDATE ... RETURNING` that claims the next
ready row, one `UPDATE` that finishes it. That is the least any claim-then-finish design pays
per task without batching, so `2 * tasks/s` of a workload over this figure says how close the
engine comes to the store's ceiling.
"""

from __future__ import annotations

import sqlite3
import time

from benchmarks.targets import Target

ROWS = 20_000

SCHEMA = (
    "CREATE TABLE items (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, state TEXT NOT NULL,"
    " rank INTEGER NOT NULL DEFAULT 0, ready_at REAL, agent_id INTEGER,"
    " attempts INTEGER NOT NULL DEFAULT 0, started_at REAL, finished_at REAL)",
    "CREATE INDEX items_ready ON items (run_id, state, rank, ready_at)",
)
CLAIM = (
    "UPDATE items SET state = 'running', attempts = attempts + 1, agent_id = ?, started_at = ?"
    " WHERE id = (SELECT id FROM items WHERE run_id = ? AND state = 'ready'"
    " ORDER BY rank, ready_at LIMIT 1) RETURNING id, attempts"
)
FINISH = (
    "UPDATE items SET state = 'succeeded', finished_at = ?, agent_id = NULL"
    " WHERE id = ? AND state = 'running' AND attempts = ?"
)


def measure(target: Target, rows: int = ROWS) -> dict[str, float]:
    if target.backend != "sqlite":
        raise SystemExit(f"floor: no {target.backend} floor yet")
    with target.fresh("floor") as url:
        path = url[len("sqlite:///"):]
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            for stmt in SCHEMA:
                conn.execute(stmt)
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT INTO items (run_id, state, ready_at) VALUES (1, 'ready', ?)",
                ((now + i * 1e-6,) for i in range(rows)),
            )
            conn.execute("COMMIT")
            transitions = 0
            start = time.perf_counter()
            while True:
                conn.execute("BEGIN IMMEDIATE")
                got = conn.execute(CLAIM, (1, time.time(), 1)).fetchone()
                conn.execute("COMMIT")
                if got is None:
                    break
                conn.execute("BEGIN IMMEDIATE")
                conn.execute(FINISH, (time.time(), got[0], got[1]))
                conn.execute("COMMIT")
                transitions += 2
            wall = time.perf_counter() - start
            done = conn.execute("SELECT COUNT(*) FROM items WHERE state = 'succeeded'")
            if done.fetchone()[0] != rows:
                raise RuntimeError("floor: not every row finished")
        finally:
            conn.close()
    return {"transitions_per_s": transitions / wall, "tasks_per_s": rows / wall,
            "wall_s": wall}
