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
    target: float | None  # the SQLite target of BENCH.md
    higher_is_better: bool


# The headline figures, in table order. A row's other figures are kept in the JSON.
FIGURES = (
    Figure("chain200", "ms_per_hop", "chain200 per hop (wall/200)", "ms", 1.0, False),
    Figure("chain200", "hop_p50_ms", "chain200 hop p50 (start to start)", "ms", 1.0, False),
    Figure("chain200", "hop_p99_ms", "chain200 hop p99 (start to start)", "ms", None, False),
    Figure("chain200", "gap_p50_ms", "chain200 gap p50 (finish to next start)", "ms", None,
           False),
    Figure("chain200", "gap_p99_ms", "chain200 gap p99 (finish to next start)", "ms", None,
           False),
    Figure("wide1000", "tasks_per_s", "wide1000", "tasks/s", 3000.0, True),
    Figure("stages10x100", "wall_s", "stages10x100 wall", "s", 0.5, False),
    Figure("sleep64", "makespan_s", "sleep64 makespan", "s", 4.1, False),
    Figure("shell500", "tasks_per_s", "shell500", "tasks/s", 400.0, True),
    Figure("fanout10k", "wall_s", "fanout10k wall", "s", 6.0, False),
    Figure("fanout100k", "wall_s", "fanout100k wall", "s", 60.0, False),
    Figure("sched_jitter", "p50_ms", "sched_jitter p50 (start - due)", "ms", None, False),
    Figure("sched_jitter", "p99_ms", "sched_jitter p99 (start - due)", "ms", 50.0, False),
    Figure("floor", "transitions_per_s", "floor (claim or finish)", "transitions/s", None, True),
    Figure("wide1000_vs_floor", "percent", "wide1000 against the floor", "%", 20.0, True),
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


def _met(fig: Figure, median: float) -> str:
    if fig.target is None:
        return ""
    ok = median >= fig.target if fig.higher_is_better else median <= fig.target
    return "yes" if ok else "NO"


def table(doc: dict[str, Any]) -> str:
    head = ("figure", "median", "min-max", "unit", "target", "met", "peak RSS MB")
    lines: list[tuple[str, ...]] = [head]
    for fig in FIGURES:
        row = doc["rows"].get(fig.row)
        if row is None or fig.key not in row["figures"]:
            continue
        s = row["figures"][fig.key]
        target = "" if fig.target is None else (
            ("≥ " if fig.higher_is_better else "≤ ") + _num(fig.target))
        rss = row.get("peak_rss_mb")
        lines.append((fig.label, _num(s["median"]), f"{_num(s['min'])}-{_num(s['max'])}",
                      fig.unit, target, _met(fig, s["median"]),
                      "" if rss is None else f"{rss:.0f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        out.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(line, widths, strict=True))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
