"""Reads for forecasts: past durations of a job's tasks, and the runs, task runs, agents and
pools a simulation starts from.

Nothing is aggregated while tasks run: the duration model is read when a forecast is made,
with bounded queries over the job's last runs (`runs (job_id, id)`), their successful attempts
(`attempts` by primary key), and at most `ITEM_SAMPLES` items per foreach parent
(`task_runs (parent_id, item_index)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskplan.dataclass import dataclass
from taskplan.store.db import Tx
from taskplan.store.ops import loads
from taskplan.store.tx import Row

ITEM_SAMPLES = 50  # items sampled per foreach parent and past run


def _marks(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    return (", ".join(f":{prefix}{i}" for i in range(len(values))),
            {f"{prefix}{i}": v for i, v in enumerate(values)})


@dataclass(frozen=True)
class PastRun:
    run_id: int
    params: dict[str, Any]
    state: str


def job_id(tx: Tx, name: str) -> int | None:
    value = tx.scalar("SELECT id FROM jobs WHERE name = :n", {"n": name})
    return None if value is None else int(value)


def recent_runs(tx: Tx, job_id: int, limit: int) -> list[PastRun]:
    """The job's newest runs (top-level or not), newest first."""
    rows = tx.all("SELECT id, params, state FROM runs WHERE job_id = :j ORDER BY id DESC"
                  " LIMIT :k", {"j": job_id, "k": limit})
    return [PastRun(int(i), loads(params) or {}, str(state)) for i, params, state in rows]


def _by_task(rows: Sequence[Row]) -> dict[str, list[float]]:
    """(task, value) rows -> each task's values, in row order."""
    out: dict[str, list[float]] = {}
    for task, value in rows:
        out.setdefault(str(task), []).append(float(value))
    return out


def task_durations(tx: Tx, run_ids: Sequence[int]) -> dict[str, list[float]]:
    """Task -> seconds of the successful final attempt of each of its plain or job task runs
    in these runs (not items, not foreach parents), newest run first."""
    if not run_ids:
        return {}
    marks, params = _marks("r", run_ids)
    rows = tx.all(
        "SELECT t.task, a.finished_at - a.started_at FROM task_runs t JOIN attempts a"
        " ON a.task_run_id = t.id AND a.attempt = t.attempts"
        f" WHERE t.run_id IN ({marks}) AND t.state = 'succeeded' AND t.kind = 'task'"
        " AND t.parent_id IS NULL AND a.finished_at IS NOT NULL"
        " ORDER BY t.run_id DESC", params)
    return _by_task(rows)


def item_durations(tx: Tx, run_ids: Sequence[int], per_parent: int = ITEM_SAMPLES
                   ) -> dict[str, list[float]]:
    """Foreach task -> seconds of its successful items, the first `per_parent` of each parent,
    newest run first."""
    if not run_ids:
        return {}
    marks, params = _marks("r", run_ids)
    params["k"] = per_parent
    rows = tx.all(
        "SELECT p.task, a.finished_at - a.started_at FROM task_runs p"
        " JOIN task_runs c ON c.parent_id = p.id AND c.item_index < :k"
        " JOIN attempts a ON a.task_run_id = c.id AND a.attempt = c.attempts"
        f" WHERE p.run_id IN ({marks}) AND p.kind = 'foreach' AND c.state = 'succeeded'"
        " AND a.finished_at IS NOT NULL ORDER BY p.run_id DESC", params)
    return _by_task(rows)


def item_counts(tx: Tx, run_ids: Sequence[int]) -> dict[str, list[int]]:
    """Foreach task -> items of each of its parents in these runs that ended succeeded, newest
    run first."""
    if not run_ids:
        return {}
    marks, params = _marks("r", run_ids)
    rows = tx.all(
        "SELECT p.task, (SELECT MAX(c.item_index) + 1 FROM task_runs c"
        " WHERE c.parent_id = p.id) FROM task_runs p"
        f" WHERE p.run_id IN ({marks}) AND p.kind = 'foreach' AND p.state = 'succeeded'"
        " ORDER BY p.run_id DESC", params)
    out: dict[str, list[int]] = {}
    for task, count in rows:
        out.setdefault(str(task), []).append(int(count or 0))
    return out


def run_durations(tx: Tx, job_name: str, limit: int) -> list[float]:
    """Seconds from start to end of the job's newest successful runs."""
    rows = tx.all(
        "SELECT r.finished_at - r.started_at FROM runs r JOIN jobs j ON j.id = r.job_id"
        " WHERE j.name = :n AND r.state = 'succeeded' AND r.started_at IS NOT NULL"
        " ORDER BY r.id DESC LIMIT :k", {"n": job_name, "k": limit})
    return [float(seconds) for (seconds,) in rows]


@dataclass(frozen=True)
class ActiveRun:
    run_id: int
    job_id: int
    job: str
    version_id: int
    state: str
    priority: int
    max_parallel: int | None
    on_failure: str
    halt: str | None
    halt_stage: int | None
    parent_task_run_id: int | None
    root_run_id: int | None
    created_at: float
    started_at: float | None


_ACTIVE_COLS = (
    "r.id, r.job_id, j.name, r.version_id, r.state, r.priority, r.max_parallel, r.on_failure,"
    " r.halt, r.halt_stage, r.parent_task_run_id, r.root_run_id, r.created_at, r.started_at"
)


def _active(row: Row) -> ActiveRun:
    (run_id, job_id, job, version_id, state, priority, max_parallel, on_failure, halt,
     halt_stage, parent_task_run_id, root_run_id, created_at, started_at) = row
    return ActiveRun(int(run_id), int(job_id), str(job), int(version_id), str(state),
                     int(priority), max_parallel, str(on_failure), halt, halt_stage,
                     parent_task_run_id, root_run_id, float(created_at), started_at)


def active_runs(tx: Tx) -> list[ActiveRun]:
    """Runs that take slots now: running or stopping."""
    rows = tx.all(f"SELECT {_ACTIVE_COLS} FROM runs r JOIN jobs j ON j.id = r.job_id"
                  " WHERE r.state IN ('running', 'stopping') ORDER BY r.id")
    return [_active(r) for r in rows]


@dataclass(frozen=True)
class TaskRunState:
    id: int
    task: str
    kind: str
    parent_id: int | None
    item_index: int | None
    state: str
    priority: int
    pool: str | None
    stage: int | None
    trigger_rule: str
    started_at: float | None
    ready_at: float | None
    child_run_id: int | None


_TR_STATE_COLS = (
    "id, task, kind, parent_id, item_index, state, priority, pool, stage, trigger_rule,"
    " started_at, ready_at, child_run_id"
)


def _states(rows: Sequence[Row]) -> list[TaskRunState]:
    return [TaskRunState(int(i), str(task), str(kind), parent_id, item_index, str(state),
                         int(priority), pool, stage, str(trigger_rule), started_at, ready_at,
                         child_run_id)
            for (i, task, kind, parent_id, item_index, state, priority, pool, stage,
                 trigger_rule, started_at, ready_at, child_run_id) in rows]


@dataclass(frozen=True)
class ReadyItems:
    """The ready items of one foreach parent, counted instead of listed."""

    parent_id: int
    count: int
    first: TaskRunState  # the first of them, standing for all (same task, pool, priority)


def run_task_states(tx: Tx, run_id: int, max_items: int
                    ) -> tuple[list[TaskRunState], list[ReadyItems]]:
    """What a simulation of the run needs: its task runs, except succeeded items (they change
    nothing any more) and the ready items of a foreach that has more than `max_items` of them
    (counted, one row standing for them)."""
    rows = _states(tx.all(
        f"SELECT {_TR_STATE_COLS} FROM task_runs WHERE run_id = :r AND (parent_id IS NULL"
        " OR state NOT IN ('ready', 'succeeded')) ORDER BY id", {"r": run_id}))
    counts = tx.all(
        "SELECT parent_id, COUNT(*), MIN(id) FROM task_runs WHERE run_id = :r"
        " AND state = 'ready' AND parent_id IS NOT NULL GROUP BY parent_id", {"r": run_id})
    few = [int(p) for p, n, _ in counts if int(n) <= max_items]
    crowded: list[ReadyItems] = []
    for parent_id, n, first_id in counts:
        if int(n) > max_items:
            (first,) = _states(tx.all(f"SELECT {_TR_STATE_COLS} FROM task_runs WHERE id = :i",
                                      {"i": first_id}))
            crowded.append(ReadyItems(int(parent_id), int(n), first))
    if few:
        marks, params = _marks("p", few)
        params["r"] = run_id
        rows += _states(tx.all(
            f"SELECT {_TR_STATE_COLS} FROM task_runs WHERE run_id = :r AND state = 'ready'"
            f" AND parent_id IN ({marks}) ORDER BY id", params))
        rows.sort(key=lambda r: r.id)
    return rows, crowded


def alive_slots(tx: Tx, now: float) -> int:
    """Slots of the agents that claim work now (alive, lease not expired)."""
    value = tx.scalar("SELECT COALESCE(SUM(slots), 0) FROM agents WHERE state = 'alive'"
                      " AND lease_until >= :t", {"t": now})
    return int(value or 0)


def pool_sizes(tx: Tx) -> dict[str, int]:
    """Declared pool sizes (a plain read: `ops.pool_sizes` locks them for claims)."""
    return {str(n): int(s) for n, s in tx.all("SELECT name, size FROM pools")}
