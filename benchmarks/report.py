"""Rows, targets, the printed table and the JSON document."""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Figure:
    row: str
    key: str  # the metric key in the row's figures
    label: str
    unit: str
    target: float | None  # the SQLite target of the benchmark plan
    higher_is_better: bool
    pg_target: float | None = None  # the PostgreSQL target of the benchmark plan

    def target_for(self, backend: str) -> float | None:
        return self.pg_target if backend == "postgresql" else self.target


# The headline figures, in table order. A row's other figures are kept in the JSON.
FIGURES: tuple[Figure, ...] = (
    Figure("chain200", "ms_per_hop", "chain200 per hop (wall/200)", "ms", 1.0, False, 5.0),
    Figure("chain200", "hop_p50_ms", "chain200 hop p50 (start to start)", "ms", 1.0, False,
           5.0),
    Figure("chain200", "hop_p99_ms", "chain200 hop p99 (start to start)", "ms", None, False),
    Figure("chain200", "gap_p50_ms", "chain200 gap p50 (finish to next start)", "ms", None,
           False),
    Figure("chain200", "gap_p99_ms", "chain200 gap p99 (finish to next start)", "ms", None,
           False),
    Figure("wide1000", "tasks_per_s", "wide1000", "tasks/s", 3000.0, True, 2000.0),
    Figure("wide1000", "agents_cpu_ms_per_task", "wide1000 agents' CPU per task (PostgreSQL)",
           "ms", None, False),
    Figure("stages10x100", "wall_s", "stages10x100 wall", "s", 0.5, False, 1.0),
    Figure("sleep64", "makespan_s", "sleep64 makespan", "s", 4.1, False, 4.2),
    Figure("shell500", "tasks_per_s", "shell500", "tasks/s", 400.0, True, 300.0),
    # fanout10k: a tenth of the fanout100k targets (the plan: cost grows linearly).
    Figure("fanout10k", "wall_s", "fanout10k wall", "s", 6.0, False, 9.0),
    Figure("fanout10k", "agent_peak_rss_mb", "fanout10k agent peak RSS", "MB", None, False,
           300.0),
    Figure("fanout100k", "wall_s", "fanout100k wall", "s", 60.0, False, 90.0),
    Figure("fanout100k", "agent_peak_rss_mb", "fanout100k agent peak RSS", "MB", None, False,
           300.0),
    Figure("sched_jitter", "p50_ms", "sched_jitter p50 (start - due)", "ms", None, False),
    Figure("sched_jitter", "p99_ms", "sched_jitter p99 (start - due)", "ms", 50.0, False,
           50.0),
    Figure("fairness", "b_wall_s", "fairness: B's wall", "s", 1.0, False, 1.0),
    Figure("fairness", "a_wall_s", "fairness: A's wall (2,000 x 10 ms)", "s", None, False),
    Figure("idle50", "rss_mb", "idle50 agent RSS", "MB", 80.0, False, 80.0),
    Figure("idle50", "cpu_pct", "idle50 agent CPU", "%", 1.0, False, 1.0),
    Figure("idle50", "queries_per_s", "idle50 store queries (client-counted)", "queries/s",
           1.0, False, 1.0),
    Figure("idle50", "server_tx_per_s", "idle50 server transactions (pg_stat_database)",
           "tx/s", None, False),
    Figure("floor", "transitions_per_s", "floor (claim or finish), 1 connection",
           "transitions/s", None, True),
    Figure("floor", "transitions_per_s_8conn", "floor, 8 connections", "transitions/s", None,
           True),
    Figure("forecast_accuracy", "err10_median_pct", "forecast error at 10 % of a run (median)",
           "%", None, False),
    Figure("forecast_accuracy", "err25_median_pct", "forecast error at 25 % (median)", "%",
           None, False),
    Figure("forecast_accuracy", "err50_median_pct", "forecast error at 50 % (median)", "%",
           10.0, False, 10.0),
    Figure("forecast_accuracy", "err50_p90_pct", "forecast error at 50 % (p90)", "%", None,
           False),
    Figure("forecast_accuracy", "err75_median_pct", "forecast error at 75 % (median)", "%",
           None, False),
    # SQLite: wide1000 x 2 against the one-loop floor. PostgreSQL: against the 8-connection
    # floor, "above the unbatched floor, by batching" = at least 100 %.
    Figure("wide1000_vs_floor", "percent", "wide1000 against the floor", "%", 20.0, True,
           100.0),
    # PostgreSQL (issue 15, target 4): tasks/s over the 8-connection floor's transitions/s,
    # of `taskplan run`'s in-process agent (8 slots) and of 2 agent processes x 4 slots.
    Figure("cli_wide1000_vs_floor", "percent",
           "taskplan run wide1000 tasks/s against the floor's transitions/s", "%", None, True,
           100.0),
    Figure("wide1000_tasks_vs_floor", "percent",
           "wide1000 (2 x 4 slots) tasks/s against the floor's transitions/s", "%", None, True,
           150.0),
    # Command level (SQLite): ratios and differences against references measured alongside.
    Figure("cli_help", "help_ratio", "taskplan --help / python -c 'import click'", "x", 3.0,
           False),
    Figure("cli_help", "version_ratio", "taskplan --version / import click", "x", 3.0, False),
    Figure("cli_help", "status_ratio", "taskplan status / import click", "x", 3.0, False),
    Figure("cli_help", "runs_ratio", "taskplan runs / import click", "x", 3.0, False),
    Figure("cli_run_one", "over_ref_s", "run one shell task, over python+task", "s", 0.3,
           False),
    Figure("cli_run_one_fresh", "over_existing_s", "same on a new store, over existing", "s",
           0.2, False),
    Figure("load1000", "wall_s", "parse+validate+apply 1,000 tasks", "s", 0.15, False),
    Figure("load10000", "wall_s", "parse+validate+apply 10,000 tasks", "s", 1.5, False),
    Figure("cli_chain200", "process_wall_s", "taskplan run chain200, whole process", "s", None,
           False),
    Figure("cli_chain200", "first_process_wall_s",
           "taskplan run chain200, whole process, file not yet checked", "s", None, False),
    Figure("cli_wide1000", "process_wall_s", "taskplan run wide1000, whole process", "s", None,
           False),
    Figure("cli_wide1000", "first_process_wall_s",
           "taskplan run wide1000, whole process, file not yet checked", "s", None, False),
    Figure("cli_stages10x100", "process_wall_s", "taskplan run stages10x100, whole process",
           "s", None, False),
    Figure("cli_stages10x100", "first_process_wall_s",
           "taskplan run stages10x100, whole process, file not yet checked", "s", None, False),
    # Target 4 through the CLI (SQLite): the run as the `taskplan run` process recorded it,
    # against the floor measured in the same invocation.
    Figure("cli_chain200", "ms_per_hop", "taskplan run chain200: per hop (run span/200)", "ms",
           None, False),
    Figure("cli_chain200", "hop_p50_ms", "taskplan run chain200: hop p50", "ms", None, False),
    Figure("cli_chain200", "hop_p99_ms", "taskplan run chain200: hop p99", "ms", None, False),
    Figure("cli_wide1000", "tasks_per_s", "taskplan run wide1000: tasks/s of the run", "tasks/s",
           None, True),
    Figure("cli_vs_floor", "wide1000_percent", "taskplan run wide1000 x 2 against the floor",
           "%", 60.0, True),
    Figure("cli_vs_floor", "hop_in_floor_transitions",
           "taskplan run chain200 hop, in floor transitions", "x", 5.0, False),
    Figure("cli_vs_floor", "hop_p50_in_floor_transitions",
           "taskplan run chain200 hop p50, in floor transitions", "x", None, False),
    Figure("cli_vs_floor", "hop_p99_over_p50", "taskplan run chain200 hop p99 / p50", "x", 5.0,
           False),
)


# agents_scale (PostgreSQL), read against the machine's cores (its busy %).
FIGURES += tuple(
    Figure("agents_scale", f"{work}_{n}a_{key}", f"{work}, {n} agent(s) x 4 slots: {what}", unit,
           None, key == "tasks_per_s")
    for n in (1, 2, 4) for work in ("wide1000", "fanout10k")
    for key, what, unit in (("tasks_per_s", "throughput", "tasks/s"),
                            ("db_cpu_ms_per_task", "DB CPU per task", "ms"),
                            ("agents_cpu_ms_per_task", "agents' CPU per task", "ms"),
                            ("cpu_bound_tasks_per_s", "bound: cores / CPU per task", "tasks/s"),
                            ("machine_busy_pct", "machine busy (all cores)", "%"))
)


def machine() -> dict[str, Any]:
    return {
        "nproc": os.cpu_count(),
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
    }


def _num(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def backend_of_doc(doc: dict[str, Any]) -> str:
    return "postgresql" if "postgresql" in str(doc.get("db", "")) else "sqlite"


def _met(target: float | None, fig: Figure, median: float) -> str:
    if target is None:
        return ""
    ok = median >= target if fig.higher_is_better else median <= target
    return "yes" if ok else "NO"


def table(doc: dict[str, Any]) -> str:
    head = ("figure", "median", "min-max", "unit", "target", "met", "peak RSS MB")
    lines: list[tuple[str, ...]] = [head]
    backend = backend_of_doc(doc)
    for fig in FIGURES:
        goal = fig.target_for(backend)
        row = doc["rows"].get(fig.row)
        if row is None or fig.key not in row["figures"]:
            continue
        s = row["figures"][fig.key]
        target = "" if goal is None else (
            ("≥ " if fig.higher_is_better else "≤ ") + _num(goal))
        rss = row.get("peak_rss_mb")
        lines.append((fig.label, _num(s["median"]), f"{_num(s['min'])}-{_num(s['max'])}",
                      fig.unit, target, _met(goal, fig, s["median"]),
                      "" if rss is None else f"{rss:.0f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(line, widths, strict=True))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
