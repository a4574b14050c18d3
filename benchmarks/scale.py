"""`agents_scale` (PostgreSQL): what another agent process buys.

wide1000 and a 10,000-item fan-out, each executed by 1, 2 and 4 agent processes of 4 slots,
reporting tasks/s and the database server's CPU seconds per 1,000 tasks (utime + stime of every
`postgres` process of the server, read from /proc before and after). On a 2-core machine the
agents, the server and this watcher share the same cores, so the figures stop growing once the
cores are busy. The bound is stated with each figure: the agents' CPU per task (their
processes' utime + stime), and `cpu_bound_tasks_per_s`, the most this machine's cores could
give at the CPU the agents and the server spent per task (cores / (agents + database CPU per
task)); `machine_busy_pct` is the share of all cores busy during the run, other sessions on
the machine included.
"""

from __future__ import annotations

import gc
import os
import time

from benchmarks.procs import TICKS, Agents, cpu_seconds
from benchmarks.targets import Target
from benchmarks.workloads import applied, fanout_text, wait_run_end, wide_text

Figures = dict[str, float]
AGENT_COUNTS = (1, 2, 4)
SLOTS = 4


def _postgres_cpu() -> float:
    """CPU seconds used so far by every process named postgres on this machine."""
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
                raw = fh.read()
        except OSError:
            continue
        name = raw[raw.find("(") + 1:raw.rfind(")")]
        if name.startswith("postgres"):
            fields = raw.rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


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
        pids = [p.pid for p in procs.procs]
        pg0, cpu0 = _postgres_cpu(), _machine_cpu()
        ag0 = sum(cpu_seconds(pid) for pid in pids)
        start = time.perf_counter()
        run_id = engine.create_run(version_id)
        end = wait_run_end(store, run_id, procs)
        pg1, cpu1 = _postgres_cpu(), _machine_cpu()
        ag1 = sum(cpu_seconds(pid) for pid in pids)
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
