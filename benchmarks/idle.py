"""idle50: one `taskplan agent --slots 50` subprocess with nothing to do, watched for 30 s.

Figures, over the window (after the agent registered, and 2 s to settle):
- rss_mb: VmRSS of the agent process at the end (/proc/<pid>/status); hwm_mb its peak.
- cpu_pct: utime + stime of the agent process (all threads, /proc/<pid>/stat) / window.
- queries_per_s: SQL statements the agent process sent to its store, counted inside the
  agent by a benchmark-only `sitecustomize` (benchmarks/_count): SQLite's trace callback, or
  every psycopg `Cursor.execute` (and each parameter set of `executemany`). BEGIN / COMMIT /
  ROLLBACK are not counted as queries; SQLite's BEGINs are `tx_per_s`.
- PostgreSQL also: server_tx_per_s, the delta of xact_commit + xact_rollback of the
  benchmark's database in pg_stat_database (read from the admin database, so the reading
  itself is not counted; it includes any autovacuum transaction in that database).
The plan says 60 s; the brief for these figures asked for 30 s (`SECONDS`).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from typing import Any

from benchmarks.procs import COUNT_DIR, Agents, cpu_seconds, proc_status_kb
from benchmarks.targets import Target, database_of, pg_dsn
from benchmarks.workloads import Figures
from taskplan.engine import Engine
from taskplan.store.db import Store

SECONDS = 30.0
SETTLE = 2.0
SLOTS = 50


def _counts(pid: int, path: str, seq: list[int]) -> dict[str, Any]:
    seq[0] += 1
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        try:
            with open(path, encoding="utf-8") as fh:
                data = dict(json.load(fh))
            if int(data["signals"]) >= seq[0]:
                return data
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.01)
    raise RuntimeError("idle50: the agent did not write its statement count")


def _server_xacts(target: Target, url: str) -> float:
    import psycopg

    with psycopg.connect(pg_dsn(target.spec), autocommit=True) as conn:
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
            (database_of(url),)).fetchone()
    return float(row[0]) if row else float("nan")


def idle50(target: Target, seconds: float = SECONDS) -> Figures:
    pg = target.backend == "postgresql"
    with target.fresh("idle50") as url:
        store = Store(url)
        Engine(store)
        # A new file per repetition: a stale one would pass for the new agent's answer.
        path = os.path.join(target.workdir, f"idle50-count-{secrets.token_hex(6)}.json")
        env = {
            "PYTHONPATH": COUNT_DIR + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "TASKPLAN_BENCH_COUNT": path,
        }
        try:
            with Agents(url, target.workdir, 1, SLOTS, env=env) as agents:
                agents.start(store)
                store.close()  # this process holds no connection to the store in the window
                pid = agents.procs[0].pid
                time.sleep(SETTLE)
                seq = [0]
                c0 = _counts(pid, path, seq)
                x0 = _server_xacts(target, url) if pg else 0.0
                cpu0, t0 = cpu_seconds(pid), time.monotonic()
                time.sleep(seconds)
                cpu1, t1 = cpu_seconds(pid), time.monotonic()
                x1 = _server_xacts(target, url) if pg else 0.0
                c1 = _counts(pid, path, seq)
                rss = proc_status_kb(pid, "VmRSS") / 1024
                hwm = proc_status_kb(pid, "VmHWM") / 1024
                agents.check_alive()
        finally:
            store.close()
    window = t1 - t0
    figures = {
        "rss_mb": rss,
        "hwm_mb": hwm,
        "cpu_pct": (cpu1 - cpu0) / window * 100,
        "queries_per_s": (c1["statements"] - c0["statements"]) / window,
        "tx_per_s": (c1["transactions"] - c0["transactions"]) / window,
        "window_s": window,
    }
    if pg:
        figures["server_tx_per_s"] = (x1 - x0) / window
    return figures
