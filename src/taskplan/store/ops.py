"""Named operations on the store: each is one or a few SQL statements, values always bound.

The engine decides *what* transition happens; these functions say *how* it is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from taskplan.dataclass import dataclass
from taskplan.model import TaskRunKind, TaskState
from taskplan.store import notify_ops
from taskplan.store.db import Tx
from taskplan.store.dialects import Dialect, RowsInsert


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def dumps_value(value: Any) -> str:
    """A task's result or a foreach item: its keys in their own order (a sql row's columns as
    selected, a python dict as built), as the tasks reading it expect them."""
    return json.dumps(value, separators=(",", ":"), default=str)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def task_run_numbers(tx: Tx, column: str, ids: Sequence[int], where: str) -> dict[int, int]:
    """task run id -> an integer column of it, for those of `ids` that match `where` (both
    written in taskplan's code, never from input)."""
    if not ids:
        return {}
    marks = ", ".join(str(int(i)) for i in ids)
    rows = tx.all(f"SELECT id, {column} FROM task_runs WHERE id IN ({marks}) AND {where}")
    return {int(i): int(n) for i, n in rows}


# -- jobs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobRow:
    id: int
    name: str
    current_version_id: int | None  # None: the job was deleted


def job_by_name(tx: Tx, name: str) -> JobRow | None:
    row = tx.one("SELECT id, name, current_version_id FROM jobs WHERE name = :n", {"n": name})
    if row is None:
        return None
    job_id, job_name, current = row
    return JobRow(int(job_id), str(job_name), None if current is None else int(current))


def insert_job(tx: Tx, name: str, now: float) -> int:
    return int(tx.scalar(
        "INSERT INTO jobs (name, created_at, updated_at) VALUES (:n, :t, :t) RETURNING id",
        {"n": name, "t": now},
    ))


@dataclass(frozen=True)
class VersionRow:
    id: int
    job_id: int
    version: int
    spec_hash: str
    definition: str  # JSON text
    source_path: str
    base_dir: str
    created_at: float


def version_row(tx: Tx, version_id: int) -> VersionRow | None:
    row = tx.one(
        "SELECT id, job_id, version, spec_hash, definition, source_path, base_dir, created_at"
        " FROM job_versions WHERE id = :v",
        {"v": version_id},
    )
    return None if row is None else VersionRow(*row)


@dataclass(frozen=True)
class PinnedVersions:
    """The version a run pinned and its job's current one (None: the job was deleted)."""

    job: str
    pinned_id: int
    pinned: int  # its number
    current_id: int | None
    current: int | None


def pinned_and_current(tx: Tx, run_id: int) -> PinnedVersions | None:
    row = tx.one(
        "SELECT j.name, r.version_id, pv.version, j.current_version_id, cv.version"
        " FROM runs r JOIN jobs j ON j.id = r.job_id"
        " JOIN job_versions pv ON pv.id = r.version_id"
        " LEFT JOIN job_versions cv ON cv.id = j.current_version_id WHERE r.id = :r",
        {"r": run_id})
    if row is None:
        return None
    job, pinned_id, pinned, current_id, current = row
    return PinnedVersions(str(job), int(pinned_id), int(pinned),
                          None if current_id is None else int(current_id),
                          None if current is None else int(current))


def repin_run(tx: Tx, run_id: int, version_id: int, on_failure: str, max_parallel: int | None,
              priority: int) -> None:
    """Point a finished run at another version of its job (retry --latest)."""
    tx.run("UPDATE runs SET version_id = :v, on_failure = :o, max_parallel = :m, priority = :p"
           " WHERE id = :r", {"v": version_id, "o": on_failure, "m": max_parallel,
                              "p": priority, "r": run_id})


def insert_version(tx: Tx, job_id: int, definition: str, spec_hash: str, source: str,
                   base_dir: str, now: float) -> tuple[int, int]:
    number = int(tx.scalar(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM job_versions WHERE job_id = :j", {"j": job_id}
    ))
    vid = int(tx.scalar(
        "INSERT INTO job_versions (job_id, version, spec_hash, definition, source_path, base_dir,"
        " created_at) VALUES (:j, :n, :h, :d, :s, :b, :t) RETURNING id",
        {"j": job_id, "n": number, "h": spec_hash, "d": definition, "s": source, "b": base_dir,
         "t": now},
    ))
    tx.run("UPDATE jobs SET current_version_id = :v, updated_at = :t WHERE id = :j",
           {"v": vid, "t": now, "j": job_id})
    return vid, number


def upsert_pool(tx: Tx, name: str, size: int) -> None:
    tx.run(
        "INSERT INTO pools (name, size) VALUES (:n, :s)"
        " ON CONFLICT (name) DO UPDATE SET size = excluded.size",
        {"n": name, "s": size},
    )


def pool_sizes(tx: Tx) -> dict[str, int]:
    """Pool sizes; where rows lock (PostgreSQL) they stay locked until commit, in name order,
    so claims that count a pool's room take turns and each reads the usage the previous one
    committed."""
    return {str(n): int(s) for n, s in tx.all(
        f"SELECT name, size FROM pools ORDER BY name{tx.dialect.for_update}")}


def pool_usage_sql(pools: int) -> str:
    """Running task runs in each of `pools` pools (:p0, :p1, ...), read from the partial index
    of running pooled task runs, whatever the size of the store's history."""
    marks = ", ".join(f":p{i}" for i in range(pools))
    return (f"SELECT pool, COUNT(*) FROM task_runs WHERE state = 'running' AND pool IN ({marks})"
            " GROUP BY pool")


def pool_usage(tx: Tx, names: Iterable[str]) -> dict[str, int]:
    names = list(names)
    if not names:
        return {}
    rows = tx.all(pool_usage_sql(len(names)), {f"p{i}": n for i, n in enumerate(names)})
    return {str(p): int(c) for p, c in rows}


# -- runs ---------------------------------------------------------------------------------
RUN_COLS = (
    "id, job_id, version_id, root_run_id, parent_task_run_id, state, trigger, trigger_ref,"
    " params, priority, max_parallel, on_failure, halt, halt_stage, unfinished, running,"
    " ready, failed, created_at, started_at, finished_at, error"
)


@dataclass(hot=True)
class RunRow:
    id: int
    job_id: int
    version_id: int
    root_run_id: int | None
    parent_task_run_id: int | None
    state: str
    trigger: str
    trigger_ref: str | None
    params: str
    priority: int
    max_parallel: int | None
    on_failure: str
    halt: str | None
    halt_stage: int | None
    unfinished: int
    running: int
    ready: int
    failed: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None


def run_row(tx: Tx, run_id: int, *, lock: bool = False) -> RunRow | None:
    """The run; with `lock`, locked as `lock_runs` does (PostgreSQL), reading the row in the
    same statement that takes it FOR UPDATE."""
    suffix = tx.dialect.lock_run_for_read(tx, run_id) if lock else ""
    row = tx.one(f"SELECT {RUN_COLS} FROM runs WHERE id = :r{suffix}", {"r": run_id})
    return RunRow(*row) if row else None


def insert_run(tx: Tx, *, job_id: int, version_id: int, params: dict[str, Any], trigger: str,
               trigger_ref: str | None, priority: int, max_parallel: int | None,
               on_failure: str, parent_task_run_id: int | None, root_run_id: int | None,
               now: float, fire_at: float | None = None) -> int:
    run_id = int(tx.scalar(
        "INSERT INTO runs (job_id, version_id, root_run_id, parent_task_run_id, state, trigger,"
        " trigger_ref, params, priority, max_parallel, on_failure, created_at, fire_at)"
        " VALUES (:j, :v, :root, :ptr, 'queued', :tr, :ref, :p, :prio, :mp, :of, :t, :fa)"
        " RETURNING id",
        {"j": job_id, "v": version_id, "root": root_run_id, "ptr": parent_task_run_id,
         "tr": trigger, "ref": trigger_ref, "p": dumps(params), "prio": priority,
         "mp": max_parallel, "of": on_failure, "t": now, "fa": fire_at},
    ))
    if root_run_id is None:
        tx.run("UPDATE runs SET root_run_id = id WHERE id = :r", {"r": run_id})
    return run_id


def bump_run(tx: Tx, run_id: int, *, unfinished: int = 0, running: int = 0, ready: int = 0,
             failed: int = 0) -> RunRow:
    """Apply counter deltas and return the run as it now stands.

    The UPDATE takes the row lock, so concurrent finishers of one run see each other's
    decrements and exactly one of them observes `unfinished == 0`.
    """
    row = tx.one(
        "UPDATE runs SET unfinished = unfinished + :u, running = running + :rn,"
        " ready = ready + :rd, failed = failed + :f WHERE id = :r"
        f" RETURNING {RUN_COLS}",
        {"u": unfinished, "rn": running, "rd": ready, "f": failed, "r": run_id},
    )
    assert row is not None
    return RunRow(*row)


def add_to_counters(tx: Tx, run_id: int, *, running: int = 0, ready: int = 0) -> None:
    """`bump_run` for a caller that does not need the row back (a claim: it cannot end the
    run), so the statement returns and builds nothing."""
    tx.run("UPDATE runs SET running = running + :rn, ready = ready + :rd WHERE id = :r",
           {"rn": running, "rd": ready, "r": run_id})


def set_run_state(tx: Tx, run_id: int, state: str, *, now: float | None = None,
                  finished: bool = False, started: bool = False, error: str | None = None
                  ) -> None:
    tx.run(
        "UPDATE runs SET state = :s,"
        " started_at = CASE WHEN :started = 1 THEN COALESCE(started_at, :t) ELSE started_at END,"
        " finished_at = CASE WHEN :fin = 1 THEN :t ELSE finished_at END,"
        " error = COALESCE(:e, error) WHERE id = :r",
        {"s": state, "t": now, "fin": 1 if finished else 0, "started": 1 if started else 0,
         "e": error, "r": run_id},
    )
    add_events(tx, [(now or 0.0, run_id, None, state, error)])


def set_halt(tx: Tx, run_id: int, halt: str | None, halt_stage: int | None) -> None:
    tx.run("UPDATE runs SET halt = :h, halt_stage = :s WHERE id = :r",
           {"h": halt, "s": halt_stage, "r": run_id})


EVENTS_INSERT = RowsInsert("events", (
    ("at", "a", "double precision"), ("run_id", "b", "bigint"), ("task_run_id", "c", "bigint"),
    ("state", "d", "text"), ("detail", "e", "text")))


def add_events(tx: Tx, rows: Sequence[tuple[float, int, int | None, str, str | None]]) -> None:
    """Record events; the notifiable ones (a run's end, a task's final failure or retry, a
    deadline) also get their outbox rows here, in the same transaction (notify_ops)."""
    tx.dialect.insert_rows(tx, EVENTS_INSERT, [dict(zip("abcde", r, strict=True)) for r in rows])
    notify_ops.record(tx, rows)


# -- task runs ----------------------------------------------------------------------------
TR_INSERT = RowsInsert("task_runs", (
    ("run_id", "run", "bigint"), ("task", "task", "text"), ("kind", "kind", "text"),
    ("parent_id", "parent", "bigint"), ("item_index", "idx", "integer"),
    ("item", "item", "text"), ("stage", "stage", "integer"), ("state", "state", "text"),
    ("trigger_rule", "rule", "text"), ("pending_up", "pend", "integer"),
    ("priority", "prio", "integer"), ("rank", "rank", "integer"), ("pool", "pool", "text"),
    ("max_attempts", "maxa", "integer"), ("ready_at", "ready_at", "double precision"),
    ("label_set", "ls", "bigint")))


def insert_task_runs(tx: Tx, rows: Sequence[dict[str, Any]]) -> None:
    tx.dialect.insert_rows(tx, TR_INSERT, rows)


def task_ids(tx: Tx, run_id: int) -> dict[str, int]:
    return {str(t): int(i) for i, t in tx.all(
        "SELECT id, task FROM task_runs WHERE run_id = :r AND parent_id IS NULL", {"r": run_id}
    )}


EDGES_INSERT = RowsInsert("task_edges", (("up_id", "u", "bigint"), ("down_id", "d", "bigint")))


def insert_edges(tx: Tx, edges: Sequence[tuple[int, int]]) -> None:
    if edges:
        tx.dialect.insert_rows(tx, EDGES_INSERT, [{"u": u, "d": d} for u, d in edges])




def claim_candidates_sql(dialect: Dialect, staged: bool,
                         label_sets: Iterable[int] | None = None, full_pools: int = 0) -> str:
    """The claim query; reads ix_task_runs_run_id_state_rank_ready_at (tested by EXPLAIN).

    `label_sets`: for a run whose task runs need labels, the label sets this agent has
    (None: the run needs none, no filter). `full_pools`: how many pools (binds :f0, :f1, ...)
    have no room left, whose task runs are left out so that those behind them are reached.
    """
    stage_cond = " AND COALESCE(stage, 0) <= :ms" if staged else ""
    if label_sets is not None:
        ok = ", ".join(str(int(i)) for i in sorted(label_sets))
        stage_cond += (f" AND (label_set IS NULL OR label_set IN ({ok}))" if ok
                       else " AND label_set IS NULL")
    if full_pools:
        full = ", ".join(f":f{i}" for i in range(full_pools))
        stage_cond += f" AND (pool IS NULL OR pool NOT IN ({full}))"
    return (f"SELECT id, pool FROM task_runs WHERE run_id = :r AND state = 'ready'{stage_cond}"
            f" ORDER BY rank, ready_at LIMIT :k{dialect.skip_locked}")


def claim_candidates(tx: Tx, run_id: int, limit: int, max_stage: int | None,
                     label_sets: Iterable[int] | None = None,
                     full_pools: Sequence[str] = ()) -> list[tuple[int, str | None]]:
    """(id, pool) of a run's ready task runs this claim may take, best first, leaving out
    those of `full_pools`."""
    params: dict[str, Any] = {"r": run_id, "k": limit, "ms": max_stage}
    if full_pools:
        params.update((f"f{i}", name) for i, name in enumerate(full_pools))
    rows = tx.all(claim_candidates_sql(tx.dialect, max_stage is not None, label_sets,
                                       len(full_pools)), params)
    return [(int(i), pool) for i, pool in rows]


ATTEMPTS_INSERT = RowsInsert("attempts", (
    ("task_run_id", "tr", "bigint"), ("run_id", "r", "bigint"), ("attempt", "a", "integer"),
    ("agent_id", "ag", "bigint"), ("state", "s", "text"),
    ("started_at", "t", "double precision")))


def insert_attempts(tx: Tx, rows: Sequence[tuple[int, int, int, int, float]]) -> None:
    if rows:
        tx.dialect.insert_rows(tx, ATTEMPTS_INSERT, [
            {"tr": tr, "r": r, "a": a, "ag": ag, "s": "running", "t": t}
            for tr, r, a, ag, t in rows])


def finish_attempt(tx: Tx, task_run_id: int, attempt: int, state: str, now: float,
                   exit_code: int | None, error: str | None) -> None:
    tx.run(
        "UPDATE attempts SET state = :s, finished_at = :t, exit_code = :x, error = :e"
        " WHERE task_run_id = :tr AND attempt = :a",
        {"s": state, "t": now, "x": exit_code, "e": error, "tr": task_run_id, "a": attempt},
    )



def attempt_ends(tx: Tx, task_run_id: int, upto: int) -> list[tuple[str, str | None]]:
    """The state and error of each attempt of a task run up to attempt `upto`, newest first."""
    rows = tx.all("SELECT state, error FROM attempts WHERE task_run_id = :i AND attempt <= :a"
                  " ORDER BY attempt DESC", {"i": task_run_id, "a": upto})
    return [(str(state), error) for state, error in rows]

TR_COLS = (
    "id, run_id, task, kind, parent_id, stage, state, trigger_rule, pending_up, failed_up,"
    " attempts, max_attempts, pending_children, failed_children"
)


@dataclass(hot=True)
class TaskRunRow:
    id: int
    run_id: int
    task: str
    kind: str
    parent_id: int | None
    stage: int | None
    state: str
    trigger_rule: str
    pending_up: int
    failed_up: int
    attempts: int
    max_attempts: int
    pending_children: int
    failed_children: int


def task_run(tx: Tx, tr_id: int) -> TaskRunRow | None:
    row = tx.one(f"SELECT {TR_COLS} FROM task_runs WHERE id = :i", {"i": tr_id})
    return TaskRunRow(*row) if row else None


def end_running(tx: Tx, tr_id: int, attempt: int, state: str, now: float,
                exit_code: int | None, result: str | None, error: str | None
                ) -> TaskRunRow | None:
    """Leave `running` if and only if the fencing token (the attempt number) still matches;
    None when it does not (a newer attempt owns the task run, or it was cancelled)."""
    row = tx.one(
        "UPDATE task_runs SET state = :s, finished_at = :t, exit_code = :x, result = :res,"
        " error = :e, agent_id = NULL"
        " WHERE id = :i AND state = 'running' AND attempts = :a"
        f" RETURNING {TR_COLS}",
        {"s": state, "t": now, "x": exit_code, "res": result, "e": error, "i": tr_id,
         "a": attempt},
    )
    return None if row is None else TaskRunRow(*row)


@lru_cache(maxsize=64)
def _end_running_many_sql(n: int) -> str:
    values = ", ".join(f"(:i{k}, :a{k}, :s{k}, :t{k}, :x{k}, :r{k}, :e{k})" for k in range(n))
    return (
        f"WITH v(i, a, s, t, x, res, e) AS (VALUES {values})"
        " UPDATE task_runs SET state = v.s, finished_at = v.t, exit_code = CAST(v.x AS INTEGER),"
        " result = v.res, error = v.e, agent_id = NULL"
        " FROM v WHERE task_runs.id = v.i AND task_runs.state = 'running'"
        " AND task_runs.attempts = v.a"
        f" RETURNING {TR_COLS},"
        " EXISTS (SELECT 1 FROM task_edges WHERE task_edges.up_id = task_runs.id)"
    )


def end_running_many(tx: Tx, rows: Sequence[tuple[int, int, str, float, int | None,
                                                   str | None, str | None]]
                     ) -> dict[int, tuple[TaskRunRow, bool]]:
    """`end_running` for several attempts in ONE statement, with the same fencing check.

    `rows` are (task_run_id, attempt, state, now, exit_code, result, error), one per task run
    (ids must be distinct). Returns, for each task run that really left `running`, its row
    and whether it has dependants (task_edges from it); a stale (id, attempt) changes
    nothing and is absent.
    """
    params: dict[str, Any] = {}
    for k, (i, a, s, t, x, res, e) in enumerate(rows):
        params[f"i{k}"] = i
        params[f"a{k}"] = a
        params[f"s{k}"] = s
        params[f"t{k}"] = t
        params[f"x{k}"] = x
        params[f"r{k}"] = res
        params[f"e{k}"] = e
    out: dict[int, tuple[TaskRunRow, bool]] = {}
    for r in tx.all(_end_running_many_sql(len(rows)), params):
        row = TaskRunRow(*r[:-1])
        out[row.id] = (row, bool(r[-1]))
    return out


def finish_attempts(tx: Tx, rows: Sequence[tuple[int, int, str, float, int | None,
                                                  str | None]]) -> None:
    """`finish_attempt` for several attempts: (task_run_id, attempt, state, now, exit_code,
    error) each, one executemany."""
    tx.many(
        "UPDATE attempts SET state = :s, finished_at = :t, exit_code = :x, error = :e"
        " WHERE task_run_id = :tr AND attempt = :a",
        [{"s": s, "t": t, "x": x, "e": e, "tr": tr, "a": a} for tr, a, s, t, x, e in rows],
    )


def set_retrying(tx: Tx, tr_id: int, due: float, error: str | None, exit_code: int | None
                 ) -> None:
    tx.run(
        "UPDATE task_runs SET state = 'retrying', ready_at = :d, error = :e, exit_code = :x"
        " WHERE id = :i",
        {"d": due, "e": error, "x": exit_code, "i": tr_id},
    )


def decrement_dependants(tx: Tx, up_id: int, failed: int) -> list[TaskRunRow]:
    # Only dependants still waiting: after `retry`, a downstream task run that had already
    # ended (e.g. an all_done task that succeeded) keeps its state when its upstream reruns.
    rows = tx.all(
        "UPDATE task_runs SET pending_up = pending_up - 1, failed_up = failed_up + :f"
        " WHERE id IN (SELECT down_id FROM task_edges WHERE up_id = :u) AND state = 'pending'"
        f" RETURNING {TR_COLS}",
        {"f": failed, "u": up_id},
    )
    return [TaskRunRow(*r) for r in rows]


def child_done(tx: Tx, parent_id: int, failed: int) -> TaskRunRow | None:
    row = tx.one(
        "UPDATE task_runs SET pending_children = pending_children - 1,"
        " failed_children = failed_children + :f WHERE id = :p"
        f" RETURNING {TR_COLS}",
        {"f": failed, "p": parent_id},
    )
    return TaskRunRow(*row) if row else None


def set_states(tx: Tx, rows: Sequence[tuple[int, str]], now: float) -> None:
    """Terminal or ready states for task runs that did not run on an agent."""
    tx.many(
        "UPDATE task_runs SET state = :s, ready_at = CASE WHEN :s = 'ready' THEN :t"
        " ELSE ready_at END, finished_at = CASE WHEN :s = 'ready' THEN finished_at ELSE :t END"
        " WHERE id = :i",
        [{"s": s, "t": now, "i": i} for i, s in rows],
    )


@dataclass(frozen=True)
class UnfinishedTaskRun:
    id: int
    # None for a foreach's items that neither run nor wait for a retry (a million names are
    # not worth reading); those few have their task's name and their index
    task: str | None
    state: str
    kind: str
    pending_children: int
    child_run_id: int | None
    item_index: int | None
    # ready again after its last attempt failed (a retry without delay), not yet claimed: like
    # a task run `retrying`, it waits for a retry. Not one given back unstarted or taken from a
    # lost agent (that attempt is `lost`), nor one reset by `retry` (which clears the error).
    retry_due: bool


def unfinished_of_run(tx: Tx, run_id: int) -> list[UnfinishedTaskRun]:
    rows = tx.all(
        "SELECT id, CASE WHEN parent_id IS NULL OR state IN ('running', 'retrying') OR due = 1"
        " THEN task END, state, kind, pending_children, child_run_id,"
        " CASE WHEN parent_id IS NOT NULL AND (state IN ('running', 'retrying') OR due = 1)"
        " THEN item_index END, due"
        " FROM (SELECT id, parent_id, task, state, kind, pending_children, child_run_id,"
        " item_index, CASE WHEN state = 'ready' AND error IS NOT NULL AND EXISTS ("
        "SELECT 1 FROM attempts a WHERE a.task_run_id = t.id AND a.attempt = t.attempts"
        " AND a.state = 'failed') THEN 1 ELSE 0 END AS due"
        " FROM task_runs t WHERE run_id = :r"
        " AND state IN ('pending', 'ready', 'running', 'retrying')) u",
        {"r": run_id},
    )
    return [UnfinishedTaskRun(int(i), task, str(state), str(kind), int(children or 0),
                              None if child is None else int(child),
                              None if index is None else int(index), bool(due))
            for i, task, state, kind, children, child, index, due in rows]


def count_claimable(tx: Tx, run_id: int, max_stage: int | None) -> int:
    stage_cond = "" if max_stage is None else " AND COALESCE(stage, 0) <= :ms"
    return int(tx.scalar(
        "SELECT COUNT(*) FROM task_runs WHERE run_id = :r AND state IN ('ready', 'retrying')"
        f"{stage_cond}",
        {"r": run_id, "ms": max_stage},
    ))


def lock_runs(tx: Tx, run_ids: Iterable[int]) -> None:
    """Lock these runs, in id order, before touching their task runs.

    Where writers run concurrently (PostgreSQL) every transaction that changes task runs does
    this first, so two transactions cannot wait on each other in a cycle (the dialect's
    `lock_runs` says how). SQLite has one writer at a time and needs nothing.
    """
    tx.dialect.lock_runs(tx, run_ids)


def lock_for_claim(tx: Tx, run_ids: Iterable[int], root_run_id: int | None, agent_id: int
                   ) -> dict[int, ClaimableRun | None] | None:
    """Before claiming from these runs: where writers run concurrently (PostgreSQL), lock
    those this transaction has not locked yet and read their claim counters again under the
    lock (None for a run no longer claimable, or that another transaction holds: it is left
    to a later step, see `Dialect.try_lock_runs`), since shares computed from counters read
    before the lock could overrun max_parallel. None where there is one writer at a time
    (SQLite): the counters read stand."""
    if not tx.dialect.row_locks:
        return None
    new = set(run_ids) - tx.locked_runs
    if not new:
        return {}
    got = tx.dialect.try_lock_runs(tx, new)
    fresh = ({r.id: r for r in claimable_runs(tx, root_run_id, agent_id) if r.id in got}
             if got else {})
    return {run_id: fresh.get(run_id) for run_id in new}


def runs_with_due_retries(tx: Tx, now: float) -> list[int]:
    return [int(r[0]) for r in tx.all(
        "SELECT DISTINCT run_id FROM task_runs WHERE state = 'retrying' AND ready_at <= :t",
        {"t": now},
    )]


def due_retries(tx: Tx, now: float) -> list[tuple[int, int]]:
    """Retries whose delay is over become ready: (task run id, run id) of each."""
    rows = tx.all(
        "UPDATE task_runs SET state = 'ready' WHERE state = 'retrying' AND ready_at <= :t"
        " RETURNING id, run_id",
        {"t": now},
    )
    return [(int(t), int(r)) for t, r in rows]


def next_retry_due(tx: Tx) -> float | None:
    value = tx.scalar("SELECT MIN(ready_at) FROM task_runs WHERE state = 'retrying'")
    return float(value) if value is not None else None


# A run pinned to an agent (a foreground `taskplan run`) is that agent's alone while the
# agent is alive; once it stopped or was declared lost, anyone may take the run over.
PIN_FREE = (
    "(runs.pin_agent_id IS NULL OR runs.pin_agent_id = :agent OR NOT EXISTS (SELECT 1 FROM"
    " agents WHERE agents.id = runs.pin_agent_id AND agents.state IN ('alive', 'draining')))"
)


@dataclass(frozen=True, hot=True)
class ClaimableRun:
    id: int
    priority: int
    running: int
    ready: int
    max_parallel: int | None
    halt: str | None
    halt_stage: int | None
    version_id: int
    max_label_set: int  # the highest label set its task runs need (0: none)


def claimable_runs(tx: Tx, root_run_id: int | None, agent_id: int) -> list[ClaimableRun]:
    """The runs this agent may claim from (running, with ready task runs, not halted)."""
    scope = "" if root_run_id is None else " AND root_run_id = :root"
    rows = tx.all(
        "SELECT id, priority, running, ready, max_parallel, halt, halt_stage, version_id,"
        " max_label_set FROM runs WHERE state = 'running' AND ready > 0"
        f" AND (halt IS NULL OR halt = 'finish_stage'){scope} AND {PIN_FREE}",
        {"root": root_run_id, "agent": agent_id},
    )
    return [ClaimableRun(int(i), int(prio), int(running), int(ready), max_parallel, halt,
                         halt_stage, int(version), int(labels or 0))
            for i, prio, running, ready, max_parallel, halt, halt_stage, version, labels
            in rows]


# -- routing ------------------------------------------------------------------------------
def label_set_id(tx: Tx, labels: str) -> tuple[int, bool]:
    """The id of this set of labels (sorted, comma-joined), created if new; and whether it
    was already committed (a new one is not, until this transaction commits)."""
    found = tx.scalar("SELECT id FROM label_sets WHERE labels = :l", {"l": labels})
    if found is not None:
        return int(found), True
    # New sets get ids in commit order, so an agent that has read every set up to a run's
    # max_label_set knows them all (see engine.claims.label_sets_of).
    if tx.dialect.serialize_inserts(tx, "label_sets"):
        found = tx.scalar("SELECT id FROM label_sets WHERE labels = :l", {"l": labels})
        if found is not None:
            return int(found), True
    return int(tx.scalar("INSERT INTO label_sets (labels) VALUES (:l) RETURNING id",
                         {"l": labels})), False


def label_sets_after(tx: Tx, after_id: int) -> list[tuple[int, str]]:
    return [(int(i), str(s)) for i, s in tx.all(
        "SELECT id, labels FROM label_sets WHERE id > :a ORDER BY id", {"a": after_id})]


def agent_labels(tx: Tx, agent_id: int) -> str:
    return str(tx.scalar("SELECT labels FROM agents WHERE id = :a", {"a": agent_id}) or "")


def run_pin(tx: Tx, run_id: int) -> int | None:
    value = tx.scalar("SELECT pin_agent_id FROM runs WHERE id = :r", {"r": run_id})
    return None if value is None else int(value)


def set_run_routing(tx: Tx, run_id: int, *, pin_agent_id: int | None,
                    max_label_set: int | None = None) -> None:
    """Pin a run to an agent (None: unpin); with `max_label_set`, record that too."""
    if max_label_set is None:
        tx.run("UPDATE runs SET pin_agent_id = :p WHERE id = :r",
               {"p": pin_agent_id, "r": run_id})
    else:
        tx.run("UPDATE runs SET pin_agent_id = :p, max_label_set = :m WHERE id = :r",
               {"p": pin_agent_id, "m": max_label_set, "r": run_id})


# -- foreach ------------------------------------------------------------------------------
def hold_foreach_parent(tx: Tx, parent_id: int, attempt: int) -> bool:
    """Check (and row-lock) a claimed foreach parent still under this attempt."""
    return tx.run(
        "UPDATE task_runs SET pending_children = 0, failed_children = 0"
        " WHERE id = :i AND state = 'running' AND attempts = :a",
        {"i": parent_id, "a": attempt},
    ) == 1


def foreach_items_of_attempt(tx: Tx, parent_id: int, attempt: int) -> int:
    """How many items this attempt of a foreach parent already inserted (0: not expanded)."""
    # Expanding clears the parent's agent: a parent still on its agent has not expanded yet.
    return int(tx.scalar(
        "SELECT COUNT(*) FROM task_runs c JOIN task_runs p ON p.id = c.parent_id"
        " WHERE p.id = :i AND p.attempts = :a AND p.state = 'running' AND p.agent_id IS NULL",
        {"i": parent_id, "a": attempt}) or 0)


def child_of_attempt(tx: Tx, task_run_id: int, attempt: int) -> int | None:
    """The child run this attempt of a job task already started, if it did."""
    value = tx.scalar(
        "SELECT child_run_id FROM task_runs WHERE id = :i AND attempts = :a"
        " AND state = 'running' AND agent_id IS NULL", {"i": task_run_id, "a": attempt})
    return None if value is None else int(value)


def set_foreach_expanded(tx: Tx, parent_id: int, n: int) -> None:
    """The parent waits for its n items; it is no longer on an agent."""
    tx.run("UPDATE task_runs SET pending_children = :n, agent_id = NULL WHERE id = :i",
           {"n": n, "i": parent_id})


def upstream_results(tx: Tx, run_id: int, names: Sequence[str]) -> dict[str, Any]:
    """Results of the run's succeeded top-level task runs among `names`, by task name.

    A foreach's result is the list of its items' results in item order (None for an item
    that did not succeed), read from its item rows.
    """
    if not names:
        return {}
    params: dict[str, Any] = {"r": run_id}
    if len(names) <= 50:
        params.update({f"n{i}": n for i, n in enumerate(names)})
        marks = ", ".join(f":n{i}" for i in range(len(names)))
        where = f" AND task IN ({marks})"
    else:  # a stage barrier over many tasks: one scan of the run beats a huge IN list
        where = ""
    rows = tx.all("SELECT id, task, kind, result FROM task_runs WHERE run_id = :r AND"
                  f" parent_id IS NULL AND state = 'succeeded'{where}", params)
    wanted = set(names)
    found: dict[str, Any] = {}
    for tr_id, task, kind, result in rows:
        if task not in wanted:
            continue
        if kind == TaskRunKind.FOREACH:
            items = tx.all("SELECT result, state FROM task_runs WHERE parent_id = :p"
                           " ORDER BY item_index", {"p": tr_id})
            found[str(task)] = ([loads(r) if st == TaskState.SUCCEEDED else None for r, st in items]
                                if items else loads(result) or [])
        else:
            found[str(task)] = loads(result)
    return found


# -- logs ---------------------------------------------------------------------------------
def append_log(tx: Tx, task_run_id: int, attempt: int, seq: int, data: str, total: int,
               truncated: bool) -> None:
    tx.run(
        # DO NOTHING: a flush replayed after a commit whose reply was lost is a no-op.
        "INSERT INTO log_chunks (task_run_id, attempt, seq, data) VALUES (:tr, :a, :s, :d)"
        " ON CONFLICT DO NOTHING",
        {"tr": task_run_id, "a": attempt, "s": seq, "d": data},
    )
    tx.run(
        "UPDATE attempts SET output_bytes = :n, truncated = :tc"
        " WHERE task_run_id = :tr AND attempt = :a",
        {"n": total, "tc": truncated, "tr": task_run_id, "a": attempt},
    )


@dataclass(frozen=True)
class LogPiece:
    seq: int
    data: str


def read_log(tx: Tx, task_run_id: int, attempt: int, after_seq: int = -1) -> list[LogPiece]:
    """An attempt's output after chunk `after_seq`, in order."""
    rows = tx.all(
        "SELECT seq, data FROM log_chunks WHERE task_run_id = :tr AND attempt = :a"
        " AND seq > :s ORDER BY seq",
        {"tr": task_run_id, "a": attempt, "s": after_seq},
    )
    return [LogPiece(int(seq), str(data)) for seq, data in rows]


# -- agents -------------------------------------------------------------------------------
def insert_agent(tx: Tx, name: str, host: str, pid: int, slots: int, now: float,
                 lease: float, process: str | None = None, labels: str = "") -> int:
    return int(tx.scalar(
        "INSERT INTO agents (name, host, pid, slots, state, started_at, heartbeat_at,"
        " lease_until, process, labels) VALUES (:n, :h, :p, :s, 'alive', :t, :t, :l, :pr, :lb)"
        " RETURNING id",
        {"n": name, "h": host, "p": pid, "s": slots, "t": now, "l": now + lease,
         "pr": process, "lb": labels},
    ))


def heartbeat(tx: Tx, agent_id: int, now: float, lease: float, state: str | None = None
              ) -> int:
    return tx.run(
        "UPDATE agents SET heartbeat_at = :t, lease_until = :l, state = COALESCE(:s, state)"
        " WHERE id = :i AND state IN ('alive', 'draining')",
        {"t": now, "l": now + lease, "s": state, "i": agent_id},
    )


def set_agent_state(tx: Tx, agent_id: int, state: str, now: float) -> None:
    tx.run("UPDATE agents SET state = :s, heartbeat_at = :t WHERE id = :i",
           {"s": state, "t": now, "i": agent_id})


def expired_agents(tx: Tx, now: float) -> list[int]:
    return [int(r[0]) for r in tx.all(
        "SELECT id FROM agents WHERE state IN ('alive', 'draining') AND lease_until < :t",
        {"t": now},
    )]


@dataclass(frozen=True)
class LocalAgent:
    id: int
    pid: int
    process: str  # procs.identity(): boot id, pid namespace, start time


def agents_of_machine(tx: Tx, machine: str) -> list[LocalAgent]:
    """Live agents whose process ran on this machine (same boot, same pid namespace)."""
    return [LocalAgent(int(a), int(p), str(pr)) for a, p, pr in tx.all(
        "SELECT id, pid, process FROM agents WHERE state IN ('alive', 'draining')"
        " AND process LIKE :m", {"m": machine + "/%"},
    )]


def mark_agent_lost(tx: Tx, agent_id: int, now: float, process: str | None) -> bool:
    """Lost if its lease ran out, or (process given) if it is still that process's agent."""
    if process is None:
        return tx.run("UPDATE agents SET state = 'lost' WHERE id = :a AND state IN"
                      " ('alive', 'draining') AND lease_until < :t",
                      {"a": agent_id, "t": now}) > 0
    return tx.run("UPDATE agents SET state = 'lost' WHERE id = :a AND state IN"
                  " ('alive', 'draining') AND process = :p",
                  {"a": agent_id, "p": process}) > 0


def recovery_due(tx: Tx, me: int | None, since: float) -> float | None:
    """The earliest lease end of other agents that hold running task runs and have not
    heartbeated since `since`: work that comes back if they turn out to be dead."""
    value = tx.scalar(
        "SELECT MIN(a.lease_until) FROM agents a WHERE a.state IN ('alive', 'draining')"
        " AND a.id <> :me AND a.heartbeat_at < :since"
        " AND EXISTS (SELECT 1 FROM task_runs t WHERE t.agent_id = a.id"
        " AND t.state = 'running')", {"since": since, "me": -1 if me is None else me})
    return None if value is None else float(value)
