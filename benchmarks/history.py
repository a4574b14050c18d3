"""`history1m`: a store holding 1,000,000 finished runs (TASKPLAN_BENCH_HISTORY to change the
count). Times what people run against a long history (`runs`, `status`, `jobs`, `status RUN`,
as the store reads behind them and as whole CLI commands) and `purge` of a tenth of it while a
writer like an agent's heartbeat commits every 10 ms: its longest wait is how long purge blocks
agents (purge deletes in batches of 500 runs, one transaction each)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.targets import Target
from benchmarks.workloads import NOOP_MODULE, Figures, applied
from taskplan.store import reports
from taskplan.store.db import Store

TASKPLAN = str(Path(sys.executable).parent / "taskplan")
T0 = 1_700_000_000.0


def _fill(store: Store, version_id: int, n: int) -> None:
    """n finished runs of the job, one task run each, written by the database itself."""
    with store.read() as tx:
        job_id = int(tx.scalar("SELECT job_id FROM job_versions WHERE id = :v",
                               {"v": version_id}))
    if store.backend == "sqlite":
        numbers = ("WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c"
                   " WHERE i < :n) ")
        source = "c"
    else:
        numbers = ""
        source = "generate_series(1, :n) AS c(i)"
    state = "CASE WHEN i % 50 = 0 THEN 'failed' ELSE 'succeeded' END"
    with store.tx() as tx:
        tx.run(numbers + "INSERT INTO runs (id, job_id, version_id, root_run_id, state, trigger,"
               " params, on_failure, created_at, started_at, finished_at)"
               f" SELECT i, :j, :v, i, {state}, 'schedule', '{{}}', 'continue', :t + i,"
               f" :t + i, :t + i + 0.5 FROM {source}",
               {"n": n, "j": job_id, "v": version_id, "t": T0})
        tx.run(numbers + "INSERT INTO task_runs (id, run_id, task, kind, state, trigger_rule,"
               " attempts, max_attempts, started_at, finished_at)"
               f" SELECT i, i, 'a', 'task', {state}, 'all_success', 1, 1, :t + i,"
               f" :t + i + 0.5 FROM {source}", {"n": n, "t": T0})
    if store.backend == "postgresql":
        with store.tx() as tx:
            for table in ("runs", "task_runs"):
                tx.run(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                       f" (SELECT MAX(id) FROM {table}))")
            tx.run("ANALYZE runs")
            tx.run("ANALYZE task_runs")


def _ms(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def _cli_ms(url: str, *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKPLAN_")}
    start = time.perf_counter()
    subprocess.run([TASKPLAN, "--db", url, *args], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def history1m(target: Target) -> Figures:
    n = int(os.environ.get("TASKPLAN_BENCH_HISTORY", "1000000"))
    text = f"job: history\ntasks:\n  a:\n    python: {NOOP_MODULE}:run\n"
    with applied(target, "history1m", text) as (url, store, _engine, version_id):
        start = time.perf_counter()
        _fill(store, version_id, n)
        figures: Figures = {"fill_s": time.perf_counter() - start}

        def read(fn: Callable[..., object], *args: object) -> Callable[[], object]:
            def go() -> object:
                with store.read() as tx:
                    return fn(tx, *args)
            return go

        figures["runs_read_ms"] = _ms(read(reports.list_runs, None, None, 20))
        figures["runs_job_failed_read_ms"] = _ms(read(reports.list_runs, "history", "failed",
                                                      20))
        figures["status_read_ms"] = _ms(read(reports.state_counts))
        figures["jobs_read_ms"] = _ms(read(reports.jobs))
        figures["status_run_read_ms"] = _ms(read(reports.task_runs, n // 2))
        figures["cli_runs_ms"] = _cli_ms(url, "runs")
        figures["cli_status_ms"] = _cli_ms(url, "status")
        figures["cli_jobs_ms"] = _cli_ms(url, "jobs")
        figures["cli_status_run_ms"] = _cli_ms(url, "status", str(n // 2))

        # purge a tenth while a heartbeat-like writer commits every 10 ms
        waits: list[float] = []
        stop = threading.Event()
        writer = Store(url)

        def heartbeat() -> None:
            while not stop.is_set():
                begun = time.perf_counter()
                with writer.tx() as tx:
                    tx.run("UPDATE jobs SET updated_at = updated_at WHERE name = 'history'")
                waits.append(time.perf_counter() - begun)
                time.sleep(0.01)

        beat = threading.Thread(target=heartbeat)
        beat.start()
        start = time.perf_counter()
        purged = reports.purge(store, T0 + n // 10 + 1)
        figures["purge_s"] = time.perf_counter() - start
        stop.set()
        beat.join()
        writer.close()
        figures["purged_runs"] = float(purged)
        figures["purge_runs_per_s"] = purged / figures["purge_s"]
        figures["writer_max_wait_ms"] = max(waits) * 1000
        figures["writer_p50_wait_ms"] = statistics.median(waits) * 1000
        return figures
