"""Reads for the web console and its metrics: job overviews, paged run history, a run's graph
aggregated per foreach group, attempts, agents, and cluster-wide aggregates.

Every read is bounded by what one page shows (keyset pages, foreach items counted, not listed),
so a run of 100,000 task runs or a history of 100,000 runs costs a page, not the history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import field
from typing import Any

from taskplan.dataclass import dataclass
from taskplan.model import TaskRunKind
from taskplan.store.db import Tx
from taskplan.store.ops import loads
from taskplan.store.reports import (
    ATTEMPT_SELECT,
    RUN_SELECT,
    AttemptInfo,
    RunInfo,
    TaskRunInfo,
    attempt_info,
    run_info_of,
)
from taskplan.store.tx import Row


@dataclass(frozen=True)
class RecentRun:
    run_id: int
    state: str


@dataclass(frozen=True)
class JobOverview:
    name: str
    job_id: int
    version: int
    version_id: int
    versions: int
    paused: bool
    recent: list[RecentRun]  # the newest runs, newest first


def job_overviews(tx: Tx, recent: int = 20, name: str | None = None, *,
                  after: str | None = None, contains: str | None = None,
                  limit: int | None = None) -> list[JobOverview]:
    """Jobs by name (one, or a keyset page: names after `after`, containing `contains`) with
    their current version and their newest `recent` runs."""
    conds: list[str] = []
    params: dict[str, Any] = {}
    if name is not None:
        conds.append("j.name = :n")
        params["n"] = name
    if after is not None:
        conds.append("j.name > :after")
        params["after"] = after
    if contains:
        # Names are lowercase: the text lowered finds them whatever its case, on PostgreSQL
        # (whose LIKE keeps case) as on SQLite (whose LIKE ignores ASCII case).
        conds.append("j.name LIKE :like ESCAPE '!'")
        params["like"] = "%" + contains.lower().replace("!", "!!").replace("%", "!%").replace(
            "_", "!_") + "%"
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    page = f" ORDER BY j.name LIMIT {int(limit)}" if limit is not None else " ORDER BY j.name"
    rows = tx.all(
        "SELECT j.name, j.id, v.version, v.id,"
        " (SELECT COUNT(*) FROM job_versions x WHERE x.job_id = j.id), j.paused"
        " FROM jobs j JOIN job_versions v ON v.id = j.current_version_id" + where + page,
        params)
    if not rows:
        return []
    ids = ", ".join(str(int(job_id)) for _, job_id, *_ in rows)
    # One index range per job on runs(job_id, id): the newest `recent` ids start at the
    # recent-th newest, found by a LIMIT/OFFSET on that index, never by scanning the history.
    # (CROSS JOIN: SQLite must walk the jobs first, else it scans every run.)
    marks = tx.all(
        "SELECT r.job_id, r.id, r.state FROM (SELECT j.id AS jid, COALESCE((SELECT x.id"
        " FROM runs x WHERE x.job_id = j.id ORDER BY x.id DESC LIMIT 1"
        f" OFFSET {int(recent) - 1}), 0) AS lo FROM jobs j WHERE j.id IN ({ids})) b"
        " CROSS JOIN runs r WHERE r.job_id = b.jid AND r.id >= b.lo")
    by_job: dict[int, list[RecentRun]] = {}
    for job_id, run_id, state in sorted(((int(j), int(r), str(s)) for j, r, s in marks),
                                        reverse=True):  # newest first within each job
        by_job.setdefault(job_id, []).append(RecentRun(run_id, state))
    return [JobOverview(str(name), int(job_id), int(version), int(version_id), int(versions),
                        bool(paused), by_job.get(int(job_id), [])[:recent])
            for name, job_id, version, version_id, versions, paused in rows]


@dataclass(frozen=True)
class RunFilter:
    job: str | None = None
    state: str | None = None
    trigger: str | None = None
    since: float | None = None  # created_at >= since
    until: float | None = None  # created_at < until
    before_id: int | None = None  # keyset: ids below this one (the next page, newest first)


def runs_page(tx: Tx, f: RunFilter, limit: int) -> list[RunInfo]:
    """Runs newest first matching the filter: a keyset page (id < before_id), never OFFSET."""
    conds: list[str] = []
    params: dict[str, Any] = {"lim": int(limit)}
    if f.job is not None:
        conds.append("r.job_id = (SELECT id FROM jobs WHERE name = :job)")
        params["job"] = f.job
    if f.state is not None:
        conds.append("r.state = :state")
        params["state"] = f.state
    if f.trigger is not None:
        conds.append("r.trigger = :trig")
        params["trig"] = f.trigger
    if f.since is not None:
        conds.append("r.created_at >= :since")
        params["since"] = f.since
    if f.until is not None:
        conds.append("r.created_at < :until")
        params["until"] = f.until
    if f.before_id is not None:
        conds.append("r.id < :before")
        params["before"] = f.before_id
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    rows = tx.all(RUN_SELECT + where + " ORDER BY r.id DESC LIMIT :lim", params)
    return [run_info_of(r) for r in rows]


@dataclass(frozen=True)
class ChildRun:
    task: str  # the `job` task that started it
    item_index: int | None
    run_id: int


@dataclass(frozen=True)
class RunLinks:
    parent_run_id: int | None
    parent_task: str | None
    children: list[ChildRun]


def run_links(tx: Tx, run: RunInfo, job_tasks: list[str]) -> RunLinks:
    """The run's parent (a `job` task of another run) and the child runs of its `job` tasks
    (`job_tasks`: their names, so that only their rows are read)."""
    parent_run_id = parent_task = None
    if run.parent_task_run_id is not None:
        parent = tx.one("SELECT run_id, task FROM task_runs WHERE id = :i",
                        {"i": run.parent_task_run_id})
        if parent is not None:
            up_run, up_task = parent
            parent_run_id, parent_task = int(up_run), str(up_task)
    kids: list[ChildRun] = []
    for task in job_tasks[:50]:
        kids += [ChildRun(str(t), i, int(c)) for t, i, c in tx.all(
            "SELECT task, item_index, child_run_id FROM task_runs WHERE run_id = :r"
            " AND task = :t AND child_run_id IS NOT NULL ORDER BY id LIMIT 200",
            {"r": run.run_id, "t": task})]
    return RunLinks(parent_run_id, parent_task, kids)


@dataclass
class GraphNode:
    """One top-level task run (a foreach parent stands for all its items)."""

    id: int
    name: str
    kind: str
    state: str
    stage: int | None
    attempts: int
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    error: str | None
    child_run_id: int | None
    ready_at: float | None
    pool: str | None
    items: dict[str, int] = field(default_factory=dict)  # foreach: item count per state
    items_started: float | None = None
    items_finished: float | None = None


@dataclass(frozen=True)
class Edge:
    up_id: int
    down_id: int


@dataclass(frozen=True)
class RunGraph:
    nodes: list[GraphNode]
    edges: list[Edge]  # between top-level task runs
    total: int  # task runs of the run, items included, barriers excluded


_NODE_COLS = ("id, task, kind, state, stage, attempts, started_at, finished_at, exit_code,"
              " error, child_run_id, ready_at, pool")


def run_graph(tx: Tx, run_id: int) -> RunGraph:
    """The run's top-level task runs and edges, foreach items counted per state.

    Read through indexes only, however many items: a task's top-level row is its first (an
    index-only MIN over runs(run_id, task)), and the items of a run's only foreach task are
    the run's state counts (index-only over (run_id, state, ...)) less its top-level rows.
    Several foreach tasks in one run are counted per parent instead.
    """
    firsts = [int(i) for (i,) in tx.all(
        "SELECT MIN(id) FROM task_runs WHERE run_id = :r GROUP BY task", {"r": run_id})]
    nodes: list[GraphNode] = []
    if firsts:
        marks = ", ".join(str(i) for i in firsts)
        nodes = [GraphNode(int(i), str(task), str(kind), str(state), stage, int(attempts),
                           started_at, finished_at, exit_code, error, child_run_id, ready_at,
                           pool)
                 for (i, task, kind, state, stage, attempts, started_at, finished_at,
                      exit_code, error, child_run_id, ready_at, pool)
                 in tx.all(f"SELECT {_NODE_COLS} FROM task_runs WHERE id IN ({marks})"
                           " AND parent_id IS NULL ORDER BY id")]
    fans = [n for n in nodes if n.kind == TaskRunKind.FOREACH]
    total = sum(1 for n in nodes if n.kind not in (TaskRunKind.BARRIER, TaskRunKind.FOREACH))
    if len(fans) == 1:
        counts = {str(s): int(c) for s, c in tx.all(
            "SELECT state, COUNT(*) FROM task_runs WHERE run_id = :r GROUP BY state",
            {"r": run_id})}
        for n in nodes:
            counts[n.state] -= 1
        fans[0].items = {s: c for s, c in counts.items() if c > 0}
    else:
        for n in fans:
            n.items = {str(s): int(c) for s, c in tx.all(
                "SELECT state, COUNT(*) FROM task_runs WHERE parent_id = :p GROUP BY state",
                {"p": n.id})}
    for n in fans:
        total += sum(n.items.values())
        n.items_started, n.items_finished = n.started_at, n.finished_at
    ids = {n.id for n in nodes}
    edges: list[Edge] = []
    if ids:  # by up_id, the key's first column (no index leads with down_id)
        edges = [Edge(int(u), int(d)) for u, d in tx.all(
            "SELECT up_id, down_id FROM task_edges WHERE up_id IN ("
            + ", ".join(str(i) for i in sorted(ids)) + ")") if int(d) in ids]
    return RunGraph(nodes, edges, total)


_TR_COLS = ("id, task, kind, item_index, item, state, attempts, started_at, finished_at,"
            " exit_code, result, error, stage, child_run_id")


def _task_run_info(row: Row) -> TaskRunInfo:
    (tr_id, name, stored, index, item, state, attempts, started_at, finished_at, exit_code,
     result, error, stage, child_run_id) = row
    # As `status --json` names them: an item is a stored `task` row with a parent.
    kind = TaskRunKind.ITEM if index is not None else TaskRunKind(stored)
    return TaskRunInfo(int(tr_id), str(name), kind, index, loads(item), str(state),
                       int(attempts), started_at, finished_at, exit_code, loads(result), error,
                       stage, child_run_id)


def task_runs_page(tx: Tx, run_id: int, *, task: str | None = None, state: str | None = None,
                   after_id: int = 0, limit: int = 100) -> list[TaskRunInfo]:
    """Task runs of a run in id order, a keyset page; with `task`, that task's items too.

    Without a filter, pass an `after_id` at least just below the run's first task run id: the
    page is then read along the primary key from there (`+run_id` keeps SQLite off the run_id
    index, which would sort every task run of the run to return a hundred)."""
    by_key = task is None and state is None
    conds = ["+run_id = :r" if by_key else "run_id = :r", "kind <> 'barrier'", "id > :after"]
    params: dict[str, Any] = {"r": run_id, "after": after_id, "lim": int(limit)}
    if task is not None:
        conds.append("task = :t")
        params["t"] = task
    if state is not None:
        conds.append("state = :s")
        params["s"] = state
    rows = tx.all(f"SELECT {_TR_COLS} FROM task_runs WHERE " + " AND ".join(conds)
                  + " ORDER BY id LIMIT :lim", params)
    return [_task_run_info(r) for r in rows]


def task_run_by_name(tx: Tx, run_id: int, task: str, item: int | None) -> TaskRunInfo | None:
    """The task run of `task` (its item `item` for a foreach task; the parent without one)."""
    # The parent was created before its items: the first row of the task is the one.
    row = tx.one(f"SELECT {_TR_COLS} FROM task_runs WHERE run_id = :r AND task = :t"
                 " AND parent_id IS NULL AND kind <> 'barrier' ORDER BY id LIMIT 1",
                 {"r": run_id, "t": task})
    found = _task_run_info(row) if row else None
    if found is not None and item is not None:
        row = tx.one(f"SELECT {_TR_COLS} FROM task_runs WHERE parent_id = :p"
                     " AND item_index = :i", {"p": found.id, "i": item})
        found = _task_run_info(row) if row else None
    return found


def attempts_of(tx: Tx, task_run_id: int) -> list[AttemptInfo]:
    """Every attempt of one task run, oldest first (reports.attempts_of_run reads a run's)."""
    rows = tx.all(ATTEMPT_SELECT + " WHERE a.task_run_id = :t ORDER BY a.attempt",
                  {"t": task_run_id})
    return [attempt_info(r) for r in rows]


@dataclass(frozen=True)
class AttemptBar:
    task_run_id: int
    attempt: int
    state: str
    started_at: float
    finished_at: float | None


def attempt_bars(tx: Tx, task_run_ids: list[int]) -> list[AttemptBar]:
    """Every attempt of these task runs, for a Gantt chart with its retries."""
    if not task_run_ids:
        return []
    marks = ", ".join(str(int(i)) for i in task_run_ids)
    rows = tx.all("SELECT task_run_id, attempt, state, started_at, finished_at FROM attempts"
                  f" WHERE task_run_id IN ({marks}) ORDER BY task_run_id, attempt")
    return [AttemptBar(int(t), int(a), str(s), float(start), end)
            for t, a, s, start, end in rows]


@dataclass(frozen=True)
class LogChunk:
    seq: int
    data: str


def log_chunks(tx: Tx, task_run_id: int, attempt: int, from_seq: int, limit: int = 200
               ) -> list[LogChunk]:
    rows = tx.all(
        "SELECT seq, data FROM log_chunks WHERE task_run_id = :t AND attempt = :a"
        " AND seq >= :s ORDER BY seq LIMIT :n",
        {"t": task_run_id, "a": attempt, "s": from_seq, "n": int(limit)})
    return [LogChunk(int(s), str(d)) for s, d in rows]


@dataclass(frozen=True)
class AgentInfo:
    id: int
    name: str
    host: str
    pid: int
    slots: int
    running: int
    state: str  # alive | draining | stopped | lost | expired (lease ran out, not yet reaped)
    started_at: float
    heartbeat_at: float
    lease_until: float
    labels: list[str]


def agents(tx: Tx, now: float, include_gone: bool = True) -> list[AgentInfo]:
    """Agents with their running task runs counted (`taskplan agents`, the console)."""
    where = "" if include_gone else " WHERE a.state IN ('alive', 'draining')"
    rows = tx.all(
        "SELECT a.id, a.name, a.host, a.pid, a.slots, a.state, a.started_at, a.heartbeat_at,"
        " a.lease_until, a.labels, (SELECT COUNT(*) FROM task_runs t WHERE t.agent_id = a.id"
        "  AND t.state = 'running')"
        f" FROM agents a{where} ORDER BY a.id")
    out = []
    for (agent_id, name, host, pid, slots, stored, started_at, heartbeat_at, lease_until,
         labels, running) in rows:
        state = str(stored)
        if state in ("alive", "draining") and float(lease_until) < now:
            state = "expired"  # lease ran out; the next reaper marks it lost
        out.append(AgentInfo(int(agent_id), str(name), str(host), int(pid), int(slots),
                             int(running), state, float(started_at), float(heartbeat_at),
                             float(lease_until), [x for x in str(labels or "").split(",") if x]))
    return out


@dataclass(frozen=True)
class RunningTask:
    agent_id: int
    run_id: int
    task: str
    item_index: int | None


def running_on_agents(tx: Tx, agent_ids: Iterable[int], per_agent: int = 20
                      ) -> list[RunningTask]:
    """The first `per_agent` task runs each agent runs now: one short range of the
    (agent_id, state) index per agent (a limit over all of them left the later agents
    without any)."""
    out = []
    for agent_id in agent_ids:
        rows = tx.all("SELECT agent_id, run_id, task, item_index FROM task_runs"
                      " WHERE agent_id = :a AND state = 'running' AND kind = 'task'"
                      " ORDER BY id LIMIT :n", {"a": int(agent_id), "n": int(per_agent)})
        out += [RunningTask(int(a), int(r), str(t), i) for a, r, t, i in rows]
    return out


def latest_event_id(tx: Tx, run_id: int | None = None) -> int:
    """The newest event id (of one run): what the live pages watch for change."""
    if run_id is None:
        return int(tx.scalar("SELECT MAX(id) FROM events") or 0)
    return int(tx.scalar("SELECT MAX(id) FROM events WHERE run_id = :r", {"r": run_id}) or 0)


@dataclass(frozen=True)
class TriggerWatch:
    job: str
    state: str | None  # its newest finished top-level run's state, None if none
    run_id: int | None
    finished_at: float | None


def upstream_outcomes(tx: Tx, names: list[str]) -> list[TriggerWatch]:
    """What a cross-job trigger waits on: each upstream job's newest finished run."""
    out = []
    for name in names:
        row = tx.one(
            "SELECT r.id, r.state, r.finished_at FROM runs r JOIN jobs j ON j.id = r.job_id"
            " WHERE j.name = :n AND r.parent_task_run_id IS NULL"
            " AND r.state IN ('succeeded', 'failed', 'cancelled')"
            " ORDER BY r.finished_at DESC, r.id DESC LIMIT 1", {"n": name})
        if row is None:
            out.append(TriggerWatch(name, None, None, None))
        else:
            run_id, state, finished_at = row
            out.append(TriggerWatch(name, str(state), int(run_id), finished_at))
    return out


# -- metrics ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Histogram:
    """Cumulative bucket counts (same order as the bounds asked), sum and count."""

    buckets: list[int]
    total: float
    count: int


@dataclass(frozen=True)
class ClusterMetrics:
    runs: dict[tuple[str, str], int]  # (job, state) -> runs
    task_runs: dict[tuple[str, str], int]  # (job, state) -> task runs (items included)
    ready_unclaimed: int
    agents: dict[str, int]  # state -> agents
    slots_total: int
    slots_busy: int
    task_duration: dict[str, Histogram]  # job -> finished attempts' durations
    schedule_lag: Histogram
    dispatch_latency: Histogram


def _histogram_sql(expr: str, bounds: list[float]) -> str:
    parts = [f"SUM(CASE WHEN {expr} <= {b!r} THEN 1 ELSE 0 END)" for b in bounds]
    return ", ".join([*parts, f"SUM({expr})", "COUNT(*)"])


def _histogram(row: Row | None, n: int) -> Histogram:
    """From the columns of `_histogram_sql` (no row: nothing counted)."""
    if row is None:
        return Histogram([0] * n, 0.0, 0)
    *buckets, total, count = row
    assert len(buckets) == n
    return Histogram([int(v or 0) for v in buckets], float(total or 0.0), int(count or 0))


def cluster_metrics(tx: Tx, now: float, bounds: list[float]) -> ClusterMetrics:
    n = len(bounds)
    runs = {(str(j), str(s)): int(c) for j, s, c in tx.all(
        "SELECT j.name, r.state, COUNT(*) FROM runs r JOIN jobs j ON j.id = r.job_id"
        " GROUP BY j.name, r.state")}
    task_runs = {(str(j), str(s)): int(c) for j, s, c in tx.all(
        "SELECT j.name, t.state, COUNT(*) FROM task_runs t JOIN runs r ON r.id = t.run_id"
        " JOIN jobs j ON j.id = r.job_id WHERE t.kind <> 'barrier' GROUP BY j.name, t.state")}
    # A ready foreach waits for an agent to make its items, as a ready task waits for one to
    # run it: both are claims no agent has taken.
    ready = int(tx.scalar("SELECT COUNT(*) FROM task_runs WHERE state = 'ready'"
                          " AND kind <> 'barrier'") or 0)
    agent_states: dict[str, int] = {}
    total = busy = 0
    for a in agents(tx, now):
        agent_states[a.state] = agent_states.get(a.state, 0) + 1
        if a.state in ("alive", "draining"):
            total += a.slots
            busy += a.running
    durations = {str(job): _histogram(tuple(cols), n) for job, *cols in tx.all(
        "SELECT j.name, " + _histogram_sql("a.finished_at - a.started_at", bounds)
        + " FROM attempts a JOIN runs r ON r.id = a.run_id JOIN jobs j ON j.id = r.job_id"
        " WHERE a.finished_at IS NOT NULL GROUP BY j.name")}
    # A backfill takes its firings through these rows too, weeks after they were due: its
    # runs would make every backfill look like a scheduler weeks late.
    lag = tx.one("SELECT " + _histogram_sql("r.started_at - f.fire_at", bounds)
                 + " FROM schedule_firings f JOIN runs r ON r.id = f.run_id"
                 " WHERE r.started_at IS NOT NULL AND r.trigger = 'schedule'")
    # The latest attempt of a task run started when it was claimed; ready_at is when it
    # became claimable (retries move it forward). The two may come from different clocks
    # (PostgreSQL's server step), so a claim can look a hair earlier: it counts as 0.
    latency = tx.one("SELECT " + _histogram_sql("a.started_at - t.ready_at", bounds)
                     + " FROM task_runs t JOIN attempts a ON a.task_run_id = t.id"
                     " AND a.attempt = t.attempts WHERE t.ready_at IS NOT NULL")
    return ClusterMetrics(runs, task_runs, ready, agent_states, total, busy, durations,
                          _histogram(lag, n), _histogram(latency, n))
