"""Timeouts kill the whole process group; --workers and stages bound what runs at once.

Tasks append `start NAME` / `end NAME` lines to one file. The order of the lines alone (no
clock) gives the overlap and proves the barriers.
"""

from __future__ import annotations

import os
from pathlib import Path

from acceptance_helpers import Taskplan, live_processes, states, tasks_by_name


def trace_task(name: str, nap: str = "0.2", **extra: object) -> str:
    keys = "".join(f"\n    {k}: {v}" for k, v in extra.items())
    return (f"  {name}:{keys}\n"
            f"    shell: echo start {name} >> trace; sleep {nap}; echo end {name} >> trace\n")


def read_trace(path: Path) -> list[tuple[str, str]]:
    return [(w[0], w[1]) for w in (ln.split() for ln in path.read_text().splitlines())]


def max_overlap(events: list[tuple[str, str]]) -> int:
    running, peak = 0, 0
    for what, _ in events:
        running += 1 if what == "start" else -1
        peak = max(peak, running)
    return peak


def test_timeout_kills_the_grandchildren_too(tp: Taskplan) -> None:
    marker = "tp-timeout-9f2c"
    sleeper = tp.home / f"sleep-{marker}"
    os.symlink("/bin/sleep" if Path("/bin/sleep").exists() else "/usr/bin/sleep", sleeper)
    tp.write("timeout.yaml", f"""
        job: timeouts
        tasks:
          nested:
            timeout: 300ms
            retries: 1
            retry_delay: 10ms
            shell: "sh -c '{sleeper} 30 & {sleeper} 31; wait' ; echo never"
          orphaning:
            timeout: 5m
            shell: "{sleeper} 32 & echo left-behind"
          argv:
            timeout: 200ms
            shell: [sh, -c, "{sleeper} 33 & exec {sleeper} 34"]
          after:
            depends_on: [nested]
            shell: echo after
    """)
    res = tp("run", "timeout.yaml", "--workers", "4")
    assert res.code == 1, res
    final = tp.status(1)
    assert final["state"] == "failed"
    tasks = tasks_by_name(final)
    assert states(final) == {"nested": "failed", "orphaning": "succeeded", "argv": "failed",
                             "after": "upstream_failed"}
    assert tasks["nested"]["attempts"] == 2
    assert "time" in tasks["nested"]["error"] and "time" in tasks["argv"]["error"]
    assert "never" not in tp.ok("logs", "1", "nested").out
    assert tp.ok("logs", "1", "orphaning").out == "left-behind\n"
    # nothing the tasks started survives: not the sleeps of either attempt, not the orphan
    assert live_processes(marker) == []


def test_workers_bound_the_running_tasks(tp: Taskplan) -> None:
    body = "".join(trace_task(f"t{i}") for i in range(8))
    tp.write("wide.yaml", f"job: wide\ntasks:\n{body}")
    res = tp("run", "wide.yaml", "--workers", "3")
    assert res.code == 0, res
    events = read_trace(tp.home / "trace")
    assert sorted(n for w, n in events if w == "start") == [f"t{i}" for i in range(8)]
    assert sorted(n for w, n in events if w == "end") == [f"t{i}" for i in range(8)]
    peak = max_overlap(events)
    assert 2 <= peak <= 3, events

    # the job's own max_parallel is a tighter cap than the workers
    tp.write("wide.yaml", f"job: wide\nmax_parallel: 1\ntasks:\n{body}")
    (tp.home / "trace").unlink()
    res = tp("run", "wide.yaml", "--workers", "3")
    assert res.code == 0, res
    events = read_trace(tp.home / "trace")
    assert len(events) == 16 and max_overlap(events) == 1, events
    runs = tp.ok("runs", "--json").json()
    assert [(r["run_id"], r["version"]) for r in runs] == [(2, 2), (1, 1)]


def test_stage_barriers_are_never_crossed(tp: Taskplan) -> None:
    body = (trace_task("s1_slow", nap="0.4", stage=1) + trace_task("s1_fast", nap="0", stage=1)
            + trace_task("s2_a", nap="0.1", stage=2) + trace_task("s2_b", nap="0.1", stage=2)
            + trace_task("s2_c", nap="0.1", stage=2)
            + trace_task("s3", nap="0", stage=3)
            + trace_task("free", nap="0")
            + trace_task("tail", nap="0", depends_on="[s2_a]"))
    tp.write("staged.yaml", f"job: staged\ntasks:\n{body}")
    res = tp("run", "staged.yaml", "--workers", "4")
    assert res.code == 0, res
    events = read_trace(tp.home / "trace")
    position = {(w, n): i for i, (w, n) in enumerate(events)}
    assert len(position) == 16

    def stage_of(name: str) -> int | None:
        return int(name[1]) if name[0] == "s" else None

    for (what, name), at in position.items():
        st = stage_of(name)
        if what != "start" or st is None:
            continue
        for (w2, other), end_at in position.items():
            lower = stage_of(other)
            if w2 == "end" and lower is not None and lower < st:
                assert end_at < at, f"{name} started before {other} ended: {events}"
    # a dependant of a staged task waits for it
    assert position[("end", "s2_a")] < position[("start", "tail")]
    assert set(states(tp.status(1)).values()) == {"succeeded"}
