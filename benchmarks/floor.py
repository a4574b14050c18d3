"""The floor: the fastest a single loop can claim and finish rows in the same kind of store.

No taskplan code. Plain sqlite3 on a file in WAL mode with synchronous=NORMAL, as the store
uses, and a table shaped like the hot part of task_runs. Each row costs two transactions,
each its own BEGIN IMMEDIATE ... COMMIT: one `UPDATE ... RETURNING` that claims the next
ready row, one `UPDATE` that finishes it. That is the least any claim-then-finish design pays
per task without batching, so `2 * tasks/s` of a workload over this figure says how close the
engine comes to the store's ceiling.

PostgreSQL: plain psycopg (no taskplan code) on the repetition's fresh database, the same
table and index, fsync and synchronous_commit as the server has them (on here). Each row again
costs two transactions, each its own commit: a claim `UPDATE ... WHERE id = (SELECT ... FOR
UPDATE SKIP LOCKED LIMIT 1) RETURNING` and a finish `UPDATE` with the fencing check. Measured
on one connection (`transitions_per_s`, PG_ROWS rows), then with 8 connections in threads
claiming from one shared table (`transitions_per_s_8conn`, PG_ROWS_8 rows).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from typing import Any

from benchmarks.targets import Target, pg_dsn
from taskplan.store.urls import sqlite_path

ROWS = 20_000
PG_ROWS = 3_000  # ~1,000 commits/s on one connection here: ~6 s
PG_ROWS_8 = 6_000
PG_THREADS = 8

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


PG_SCHEMA = (
    "CREATE TABLE items (id BIGSERIAL PRIMARY KEY, run_id BIGINT NOT NULL, state TEXT NOT NULL,"
    " rank INTEGER NOT NULL DEFAULT 0, ready_at DOUBLE PRECISION, agent_id BIGINT,"
    " attempts INTEGER NOT NULL DEFAULT 0, started_at DOUBLE PRECISION,"
    " finished_at DOUBLE PRECISION)",
    "CREATE INDEX items_ready ON items (run_id, state, rank, ready_at)",
)
PG_CLAIM = (
    "UPDATE items SET state = 'running', attempts = attempts + 1, agent_id = %s,"
    " started_at = %s WHERE id = (SELECT id FROM items WHERE run_id = %s AND state = 'ready'"
    " ORDER BY rank, ready_at LIMIT 1 FOR UPDATE SKIP LOCKED) RETURNING id, attempts"
)
PG_FINISH = (
    "UPDATE items SET state = 'succeeded', finished_at = %s, agent_id = NULL"
    " WHERE id = %s AND state = 'running' AND attempts = %s"
)


def _pg_loop(dsn: str, run_id: int, agent: int, out: list[int], start: threading.Barrier
             ) -> None:
    import psycopg

    with psycopg.connect(dsn) as conn:
        cur = conn.cursor()
        transitions = 0
        start.wait()
        while True:
            got = cur.execute(PG_CLAIM, (agent, time.time(), run_id), prepare=True).fetchone()
            conn.commit()
            if got is None:
                break
            cur.execute(PG_FINISH, (time.time(), got[0], got[1]), prepare=True)
            conn.commit()
            transitions += 2
        out.append(transitions)


def _pg_round(dsn: str, run_id: int, rows: int, threads: int) -> float:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        now = time.time()
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO items (run_id, state, ready_at) VALUES (%s, 'ready', %s)",
                [(run_id, now + i * 1e-6) for i in range(rows)])
        conn.execute("ANALYZE items")
    out: list[int] = []
    barrier = threading.Barrier(threads + 1)
    workers = [threading.Thread(target=_pg_loop, args=(dsn, run_id, i + 1, out, barrier))
               for i in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    with psycopg.connect(dsn, autocommit=True) as conn:
        row: Any = conn.execute(
            "SELECT COUNT(*) FROM items WHERE run_id = %s AND state = 'succeeded'",
            (run_id,)).fetchone()
    if row[0] != rows or sum(out) != 2 * rows:
        raise RuntimeError("floor: not every row finished exactly once")
    return wall


def measure_pg(target: Target) -> dict[str, float]:
    import psycopg

    with target.fresh("floor") as url:
        dsn = pg_dsn(url)
        with psycopg.connect(dsn, autocommit=True) as conn:
            for stmt in PG_SCHEMA:
                conn.execute(stmt)
        wall1 = _pg_round(dsn, 1, PG_ROWS, 1)
        wall8 = _pg_round(dsn, 2, PG_ROWS_8, PG_THREADS)
    return {"transitions_per_s": 2 * PG_ROWS / wall1, "tasks_per_s": PG_ROWS / wall1,
            "transitions_per_s_8conn": 2 * PG_ROWS_8 / wall8,
            "tasks_per_s_8conn": PG_ROWS_8 / wall8, "wall_s": wall1}


def measure(target: Target, rows: int = ROWS) -> dict[str, float]:
    if target.backend == "postgresql":
        return measure_pg(target)
    if target.backend != "sqlite":
        raise SystemExit(f"floor: no {target.backend} floor")
    # A file of its own, even when --db names the user's store: the floor's table is not a
    # store's. Beside that store, so on the same file system.
    own = target if target.spec == "sqlite" else Target(
        "sqlite", os.path.dirname(os.path.abspath(sqlite_path(target.spec))))
    with own.fresh("floor") as url:
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
