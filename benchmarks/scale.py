"""`agents_scale` (PostgreSQL): what another agent process buys.

wide1000 and a 10,000-item fan-out, each executed by 1, 2 and 4 agent processes of 4 slots,
reporting tasks/s and the database server's CPU milliseconds per task (utime + stime, read
from /proc before and after, of the server processes working for the benchmark's database:
the agents' backends and the server's background processes, not other databases' backends).

On a 2-core machine the agents, the server and this watcher share the same cores, so the
figures stop growing once the cores are busy. The bound is stated with each figure: the
agents' CPU per task (their processes' utime + stime), and `cpu_bound_tasks_per_s`, the most
this machine's cores could give at the CPU the agents and the server spent per task (cores /
(agents + database CPU per task)); `machine_busy_pct` is the share of all cores busy during
the run, other sessions on the machine included.
"""

from __future__ import annotations

import gc
import os
import time

from benchmarks.procs import TICKS, Agents, cpu_seconds_of
from benchmarks.targets import Target
from benchmarks.workloads import applied, fanout_text, wait_run_end, wide_text
from taskplan.store.db import Store

Figures = dict[str, float]
AGENT_COUNTS = (1, 2, 4)
SLOTS = 4


def _server_pids(store: Store) -> set[int]:
    """The server processes that work for this benchmark's database: its client backends
    (the agents' connections) and the server's own background processes (WAL writer,
    checkpointer, ...: no database), not this process's connections nor other databases'
    backends (other users of a shared server)."""
    with store.read() as tx:
        rows = tx.all("SELECT pid FROM pg_stat_activity"
                      " WHERE datname = current_database() OR datname IS NULL")
    own = set(getattr(store.dialect, "own_pids", ()))
    return {int(pid) for (pid,) in rows} - own


def _machine_cpu() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat", encoding="ascii") as fh:
        cpu = fh.readline().split()[1:]
    values = [int(v) for v in cpu]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICKS


def _one(target: Target, label: str, text: str, tasks: int, agents: int) -> Figures:
    with (applied(target, label, text) as (url, store, engine, version_id),
          Agents(url, target.workdir, agents, SLOTS) as procs):
        procs.start(store)
        gc.collect()
        server = _server_pids(store)
        pg0, cpu0 = cpu_seconds_of(server), _machine_cpu()
        ag0 = procs.cpu_s()
        start = time.perf_counter()
        run_id = engine.create_run(version_id)
        end = wait_run_end(store, run_id, procs)
        pg1, cpu1 = cpu_seconds_of(server), _machine_cpu()
        ag1 = procs.cpu_s()
    wall = end - start
    cores = os.cpu_count() or 1
    db_ms = (pg1 - pg0) / tasks * 1000
    agents_ms = (ag1 - ag0) / tasks * 1000
    return {
        "tasks_per_s": tasks / wall,
        "db_cpu_ms_per_task": db_ms,
        "agents_cpu_ms_per_task": agents_ms,
        "cpu_bound_tasks_per_s": cores * 1000 / (db_ms + agents_ms),
        "machine_busy_pct": (cpu1 - cpu0) / (wall * cores) * 100,
    }


def agents_scale(target: Target) -> Figures:
    if target.backend != "postgresql":
        raise SystemExit("agents_scale runs on PostgreSQL: --db postgresql://...")
    figures: Figures = {}
    for agents in AGENT_COUNTS:
        for label, text, tasks in (("wide1000", wide_text(1000), 1000),
                                   ("fanout10k", fanout_text(10_000), 10_001)):
            got = _one(target, f"{label}-{agents}a", text, tasks, agents)
            for key, value in got.items():
                figures[f"{label}_{agents}a_{key}"] = value
    return figures
