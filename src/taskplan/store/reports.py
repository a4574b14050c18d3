"""Reads for people: run history, a run's task runs, job listings, logs; and retention purge."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from taskplan.dataclass import dataclass
from taskplan.model import TaskRunKind
from taskplan.store import notify_ops
from taskplan.store.db import Store, Tx
from taskplan.store.job_admin import delete_runs
from taskplan.store.ops import loads, task_run_numbers
from taskplan.store.tx import Row


@dataclass(frozen=True)
class RunInfo:
    run_id: int
    job: str
    version: int
    state: str
    trigger: str
    trigger_ref: str | None
    params: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    parent_task_run_id: int | None
    deadline_at: float | None = None
    deadline_state: str | None = None  # what the deadline checker recorded (docs/forecasts.md)


RUN_SELECT = (
    "SELECT r.id, j.name, v.version, r.state, r.trigger, r.trigger_ref, r.params, r.created_at,"
    " r.started_at, r.finished_at, r.error, r.parent_task_run_id, r.deadline_at,"
    " r.deadline_state FROM runs r"
    " JOIN jobs j ON j.id = r.job_id JOIN job_versions v ON v.id = r.version_id"
)


def run_info_of(row: Row) -> RunInfo:
    (run_id, job, version, state, trigger, trigger_ref, params, created_at, started_at,
     finished_at, error, parent_task_run_id, deadline_at, deadline_state) = row
    return RunInfo(int(run_id), str(job), int(version), str(state), str(trigger), trigger_ref,
                   loads(params), float(created_at), started_at, finished_at, error,
                   parent_task_run_id, deadline_at, deadline_state)


def run_info(tx: Tx, run_id: int) -> RunInfo | None:
    row = tx.one(RUN_SELECT + " WHERE r.id = :r", {"r": run_id})
    return run_info_of(row) if row else None


def list_runs(tx: Tx, job: str | None = None, state: str | None = None, limit: int = 20
              ) -> list[RunInfo]:
    conds, params = [], {"lim": limit}
    if job:
        conds.append("j.name = :job")
        params["job"] = job  # type: ignore[assignment]
    if state:
        conds.append("r.state = :state")
        params["state"] = state  # type: ignore[assignment]
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    rows = tx.all(RUN_SELECT + where + " ORDER BY r.id DESC LIMIT :lim", params)
    return [run_info_of(r) for r in rows]


@dataclass(frozen=True)
class TaskRunInfo:
    id: int
    name: str
    # task | foreach (a fan-out's group row) | item (one item of a fan-out) | job (a sub-job).
    kind: TaskRunKind
    item_index: int | None
    item: Any
    state: str
    attempts: int
    started_at: float | None
    finished_at: float | None
    exit_code: int | None
    result: Any
    error: str | None
    stage: int | None
    child_run_id: int | None
    # On a foreach row: how many of its items are in each state.
    items: dict[str, int] | None = None


# How a run's task runs are listed: each task, its foreach items right after it by index. The
# group row (no item_index) first on both stores: PostgreSQL sorts NULLs last, SQLite first.
_LISTED_IN_ORDER = (" ORDER BY COALESCE(parent_id, id), CASE WHEN item_index IS NULL THEN 0"
                    " ELSE 1 END, item_index, id")


def task_runs(tx: Tx, run_id: int) -> list[TaskRunInfo]:
    rows = tx.all(
        "SELECT id, task, kind, item_index, item, state, attempts, started_at, finished_at,"
        " exit_code, result, error, stage, child_run_id FROM task_runs"
        f" WHERE run_id = :r AND kind <> 'barrier'{_LISTED_IN_ORDER}", {"r": run_id})
    items: dict[int, dict[str, int]] = {}
    for parent, state, count in tx.all(
            "SELECT parent_id, state, COUNT(*) FROM task_runs WHERE run_id = :r"
            " AND parent_id IS NOT NULL GROUP BY parent_id, state", {"r": run_id}):
        items.setdefault(int(parent), {})[str(state)] = int(count)
    sub_jobs = _sub_job_tasks(tx, run_id)
    out = []
    for (tr_id, name, stored, index, item, state, attempts, started_at, finished_at, exit_code,
         result, error, stage, child_run_id) in rows:
        kind = (TaskRunKind.FOREACH if stored == TaskRunKind.FOREACH
                else TaskRunKind.ITEM if index is not None
                else TaskRunKind.JOB if str(name) in sub_jobs else TaskRunKind.TASK)
        out.append(TaskRunInfo(
            int(tr_id), str(name), kind, index, loads(item), str(state), int(attempts),
            started_at, finished_at, exit_code, loads(result), error, stage, child_run_id,
            items.get(int(tr_id), {}) if kind == TaskRunKind.FOREACH else None))
    return out


@dataclass(frozen=True)
class FailedTaskRun:
    name: str
    item_index: int | None
    attempts: int
    error: str | None
    failed_items: int = 0  # a foreach parent's failed items (it has no error of its own)


def failed_task_runs(tx: Tx, run_id: int) -> list[FailedTaskRun]:
    """The run's failed task runs, in `task_runs` order: what a run's end summary lists. Read
    through the (run_id, state) index instead of every row: a 100,000-item run's summary
    would otherwise load and decode each item to print none of them."""
    rows = tx.all(
        "SELECT task, item_index, attempts, error, failed_children FROM task_runs"
        f" WHERE run_id = :r AND state = 'failed' AND kind <> 'barrier'{_LISTED_IN_ORDER}",
        {"r": run_id})
    return [FailedTaskRun(str(name), index, int(attempts), error, int(items or 0))
            for name, index, attempts, error, items in rows]


def _sub_job_tasks(tx: Tx, run_id: int) -> set[str]:
    """Names of the run's tasks that start a job (its definition says so before any child
    run exists)."""
    text = tx.scalar("SELECT v.definition FROM runs r JOIN job_versions v ON v.id = r.version_id"
                     " WHERE r.id = :r", {"r": run_id})
    tasks = loads(text).get("tasks") if text else None
    if not isinstance(tasks, dict):
        return set()
    return {name for name, t in tasks.items() if isinstance(t, dict) and "job" in t}


@dataclass(frozen=True)
class AttemptInfo:
    task_run_id: int
    attempt: int
    state: str
    agent: str | None  # the agent's name (None: no agent recorded)
    host: str | None
    started_at: float
    finished_at: float | None
    exit_code: int | None
    error: str | None
    output_bytes: int
    truncated: bool


ATTEMPT_SELECT = (
    "SELECT a.task_run_id, a.attempt, a.state, g.name, g.host, a.started_at, a.finished_at,"
    " a.exit_code, a.error, a.output_bytes, a.truncated FROM attempts a"
    " LEFT JOIN agents g ON g.id = a.agent_id"
)


def attempts_of_run(tx: Tx, run_id: int) -> dict[int, list[AttemptInfo]]:
    """Every attempt of every task run of the run, by task run id, oldest first."""
    rows = tx.all(ATTEMPT_SELECT + " WHERE a.run_id = :r ORDER BY a.task_run_id, a.attempt",
                  {"r": run_id})
    out: dict[int, list[AttemptInfo]] = {}
    for r in rows:
        info = attempt_info(r)
        out.setdefault(info.task_run_id, []).append(info)
    return out


def attempt_info(row: Row) -> AttemptInfo:
    """An AttemptInfo from the columns of `ATTEMPT_SELECT` (console.attempts_of reads them
    too)."""
    (task_run_id, attempt, state, agent, host, started_at, finished_at, exit_code, error,
     output_bytes, truncated) = row
    return AttemptInfo(int(task_run_id), int(attempt), str(state), agent, host,
                       float(started_at), finished_at, exit_code, error, int(output_bytes or 0),
                       bool(truncated))


def state_counts(tx: Tx, run_id: int | None = None) -> dict[str, int]:
    if run_id is None:
        rows = tx.all("SELECT state, COUNT(*) FROM runs GROUP BY state")
    else:
        rows = tx.all(
            "SELECT state, COUNT(*) FROM task_runs WHERE run_id = :r AND kind <> 'barrier'"
            " AND NOT (kind = 'foreach' AND pending_children > 0 AND state = 'running')"
            " GROUP BY state", {"r": run_id})
    # By state name on every backend (PostgreSQL's GROUP BY comes back in hash order).
    return {str(s): int(c) for s, c in sorted(rows)}


def active_task_counts(tx: Tx) -> dict[str, int]:
    rows = tx.all(
        "SELECT t.state, COUNT(*) FROM task_runs t JOIN runs r ON r.id = t.run_id"
        " WHERE r.state IN ('queued', 'running', 'stopping') AND t.kind <> 'barrier'"
        " GROUP BY t.state")
    return {str(s): int(c) for s, c in sorted(rows)}


@dataclass(frozen=True)
class JobInfo:
    name: str
    job_id: int
    version: int
    version_id: int
    versions: int
    last_state: str | None
    last_run_id: int | None
    last_finished_at: float | None
    paused: bool = False


def jobs(tx: Tx) -> list[JobInfo]:
    rows = tx.all(
        "SELECT j.name, j.id, v.version, v.id,"
        " (SELECT COUNT(*) FROM job_versions x WHERE x.job_id = j.id),"
        " (SELECT r.state FROM runs r WHERE r.job_id = j.id ORDER BY r.id DESC LIMIT 1),"
        " (SELECT r.id FROM runs r WHERE r.job_id = j.id ORDER BY r.id DESC LIMIT 1),"
        " (SELECT r.finished_at FROM runs r WHERE r.job_id = j.id ORDER BY r.id DESC LIMIT 1),"
        " j.paused"
        " FROM jobs j JOIN job_versions v ON v.id = j.current_version_id")
    # By name in code-point order, as on SQLite: PostgreSQL's ORDER BY follows the database's
    # collation, which in most locales puts a_a before a-a.
    rows = sorted(rows, key=lambda r: str(r[0]))
    return [JobInfo(str(name), int(job_id), int(version), int(version_id), int(versions),
                    last_state, last_run_id, last_finished_at, bool(paused))
            for (name, job_id, version, version_id, versions, last_state, last_run_id,
                 last_finished_at, paused) in rows]


@dataclass(frozen=True)
class TaskRunRef:
    """One task run of a task (an item of a foreach task, or the task's only one)."""

    id: int
    item_index: int | None
    attempts: int
    state: str
    kind: str = "task"


def find_task_runs(tx: Tx, run_id: int, task: str) -> list[TaskRunRef]:
    """A task's runs, items in order."""
    rows = tx.all(
        "SELECT id, item_index, attempts, state, kind FROM task_runs WHERE run_id = :r"
        " AND task = :t AND kind <> 'barrier'"
        " ORDER BY CASE WHEN item_index IS NULL THEN 0 ELSE 1 END, item_index, id",
        {"r": run_id, "t": task})
    return [TaskRunRef(int(i), index, int(n), str(s), str(k)) for i, index, n, s, k in rows]


def item_indexes(tx: Tx, ids: Sequence[int]) -> dict[int, int]:
    """task run id -> its index among its foreach's items, for those of `ids` that are items."""
    return task_run_numbers(tx, "item_index", ids, "item_index IS NOT NULL")


def attempt_state(tx: Tx, task_run_id: int, attempt: int) -> str | None:
    value = tx.scalar("SELECT state FROM attempts WHERE task_run_id = :t AND attempt = :a",
                      {"t": task_run_id, "a": attempt})
    return None if value is None else str(value)


# A run that purge may take, with the runs under it: a finished top-level run (its sub-job
# runs go with it, never before: its status shows them), or a sub-job run whose top-level run
# is gone already. `state || ''` keeps SQLite's planner on the primary key (through the state
# index it reads every finished run, every batch).
_PURGE_TOPS = (
    "SELECT id, root_run_id FROM runs WHERE {which} AND finished_at IS NOT NULL"
    " AND finished_at < :b AND state || '' IN ('succeeded', 'failed', 'cancelled')"
    " AND (parent_task_run_id IS NULL"
    " OR NOT EXISTS (SELECT 1 FROM runs t WHERE t.id = runs.root_run_id))"
    " ORDER BY id")


def _trees(tx: Tx, tops: Sequence[Row]) -> list[tuple[int, list[int]]]:
    """The runs to delete for these (id, root_run_id) tops, by top in id order: each
    top-level run with every sub-job run under it, but no tree any run of which is still
    active (a cancelled run whose sub-run has not ended yet is taken by a later purge); an
    orphaned sub-run alone."""
    roots = [int(i) for i, root in tops if root is None or int(root) == int(i)]
    tree: dict[int, list[int]] = {int(i): [int(i)] for i, _ in tops}
    active: set[int] = set()
    if roots:
        marks = ", ".join(str(i) for i in roots)
        for run_id, root, state in tx.all(
                f"SELECT id, root_run_id, state FROM runs WHERE root_run_id IN ({marks})"
                " AND id <> root_run_id ORDER BY id"):
            tree[int(root)].append(int(run_id))
            if state not in ("succeeded", "failed", "cancelled"):
                active.add(int(root))
    return [(top, ids) for top, ids in sorted(tree.items()) if top not in active]


def purgeable(tx: Tx, before: float) -> list[int]:
    """Ids of the runs `purge(store, before)` would delete, oldest first."""
    trees = _trees(tx, tx.all(_PURGE_TOPS.format(which="id > 0"), {"b": before}))
    return sorted(i for _, ids in trees for i in ids)


def purge(store: Store, before: float, batch: int = 500, pause: float | None = None) -> int:
    """Delete runs that finished before `before`, with everything hanging off them, and with
    the sub-job runs they started (a sub-job run goes with its top-level run, not before).

    In batches of about `batch` runs (whole trees), each its own short write transaction: the
    batch is found in a read snapshot (walking the primary key from where the last one ended,
    so the whole purge reads the table once), then re-checked by id and deleted. On SQLite the
    write lock is then left free for `pause` seconds (default 0.1, SQLite's longest
    busy-handler sleep) so that agents waiting for it get it between batches instead of being
    starved.
    """
    if pause is None:
        pause = store.dialect.batch_pause
    total, last = 0, 0
    while True:
        with store.read() as tx:
            found = [int(i) for i, _ in tx.all(
                _PURGE_TOPS.format(which="id > :last") + " LIMIT :n",
                {"last": last, "b": before, "n": batch})]
        if not found:
            with store.tx() as tx:
                notify_ops.purge_runless(tx, before)
            return total
        last = found[-1]
        marks = ", ".join(str(i) for i in found)
        with store.tx() as tx:
            # Still finished (`retry` may have restarted one since the snapshot), and locked
            # where rows lock: a retry under way is waited for, then its run is left alone.
            ids: list[int] = []
            tops = tx.all(_PURGE_TOPS.format(which=f"id IN ({marks})") + tx.dialect.for_update,
                          {"b": before})
            for top, tree in _trees(tx, tops):
                ids += tree
                if len(ids) >= batch:  # runs with many sub-job runs: the rest next time
                    last = top
                    break
            delete_runs(tx, ids)
        total += len(ids)
        if pause:
            time.sleep(pause)
