"""Run-level reads and writes of the engine's cold paths: a run's state and metadata, halting
and cancelling, sub-job bookkeeping, and retry in place (the hot path is in ops.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskplan.dataclass import dataclass
from taskplan.store.ops import loads
from taskplan.store.tx import Tx


def run_state(tx: Tx, run_id: int) -> str | None:
    state = tx.scalar("SELECT state FROM runs WHERE id = :r", {"r": run_id})
    return None if state is None else str(state)


@dataclass(frozen=True, hot=True)
class RunMeta:
    """What never changes about a run (until `retry --latest` moves it to a new version)."""

    version_id: int
    params: dict[str, Any]
    fire_at: float  # the schedule instant it stands for, else its creation
    root_run_id: int  # the top run it belongs to: itself, or its parent run's root


def run_meta(tx: Tx, run_id: int) -> RunMeta | None:
    row = tx.one("SELECT version_id, params, COALESCE(fire_at, created_at),"
                 " COALESCE(root_run_id, id) FROM runs WHERE id = :r", {"r": run_id})
    if row is None:
        return None
    version_id, params, fire_at, root = row
    return RunMeta(int(version_id), loads(params), float(fire_at), int(root))


def mark_stopping(tx: Tx, run_id: int) -> None:
    """The run drains: nothing new starts, what runs finishes (on_failure: stop)."""
    tx.run("UPDATE runs SET state = 'stopping' WHERE id = :r", {"r": run_id})


def cancel_running(tx: Tx, task_run_ids: Sequence[int], now: float) -> None:
    """Running task runs of an ending run were cancelled: off their agents, attempts closed."""
    if not task_run_ids:
        return
    ids = ", ".join(str(int(i)) for i in task_run_ids)
    tx.run(f"UPDATE task_runs SET agent_id = NULL WHERE id IN ({ids})")
    tx.run("UPDATE attempts SET state = 'cancelled', finished_at = :t WHERE state = 'running'"
           f" AND task_run_id IN ({ids})", {"t": now})


# -- sub-jobs -----------------------------------------------------------------------------
def release_job_task(tx: Tx, task_run_id: int, attempt: int) -> bool:
    """A `job` task that starts its child run leaves its agent's slot (it stays running until
    the child ends). False when the claim was fenced off."""
    return tx.run("UPDATE task_runs SET agent_id = NULL WHERE id = :i AND state = 'running'"
                  " AND attempts = :a", {"i": task_run_id, "a": attempt}) == 1


def set_child_run(tx: Tx, task_run_id: int, child_run_id: int) -> None:
    tx.run("UPDATE task_runs SET child_run_id = :c WHERE id = :i",
           {"c": child_run_id, "i": task_run_id})


def active_child_runs(tx: Tx, run_id: int) -> list[int]:
    """The child runs the run's running job tasks wait for, by id."""
    return [int(c) for (c,) in tx.all(
        "SELECT child_run_id FROM task_runs WHERE run_id = :r AND state = 'running'"
        " AND child_run_id IS NOT NULL ORDER BY child_run_id", {"r": run_id})]


def job_ancestry(tx: Tx, run_id: int | None, limit: int = 1000) -> list[str]:
    """Job names from this run up through the runs that started it (job tasks)."""
    names: list[str] = []
    while run_id is not None and len(names) < limit:
        row = tx.one("SELECT r.parent_task_run_id, j.name FROM runs r JOIN jobs j"
                     " ON j.id = r.job_id WHERE r.id = :r", {"r": run_id})
        if row is None:
            break
        parent_task_run, name = row
        names.append(str(name))
        run_id = None if parent_task_run is None else tx.scalar(
            "SELECT run_id FROM task_runs WHERE id = :i", {"i": parent_task_run})
    return names


def job_name(tx: Tx, job_id: int) -> str | None:
    name = tx.scalar("SELECT name FROM jobs WHERE id = :j", {"j": job_id})
    return None if name is None else str(name)


# -- retry in place -----------------------------------------------------------------------
@dataclass(frozen=True)
class RetryTaskRun:
    id: int
    task: str
    kind: str
    parent_id: int | None
    state: str
    attempts: int
    pending_children: int


def task_runs_for_retry(tx: Tx, run_id: int) -> list[RetryTaskRun]:
    rows = tx.all("SELECT id, task, kind, parent_id, state, attempts, pending_children"
                  " FROM task_runs WHERE run_id = :r", {"r": run_id})
    return [RetryTaskRun(int(i), str(task), str(kind), None if parent is None else int(parent),
                         str(state), int(attempts), int(children or 0))
            for i, task, kind, parent, state, attempts, children in rows]


def edges_of_run(tx: Tx, run_id: int) -> list[tuple[int, int]]:
    """(upstream id, downstream id) of every dependency edge of a run."""
    rows = tx.all("SELECT e.up_id, e.down_id FROM task_edges e JOIN task_runs t"
                  " ON t.id = e.down_id WHERE t.run_id = :r", {"r": run_id})
    return [(int(up), int(down)) for up, down in rows]


@dataclass(frozen=True)
class Reset:
    """A task run set back for a retry: its new state and counters."""

    task_run_id: int
    state: str
    pending_up: int
    failed_up: int
    pending_children: int
    extra_attempts: int


def reset_task_runs(tx: Tx, resets: Sequence[Reset], now: float) -> None:
    tx.many(
        "UPDATE task_runs SET state = :s, pending_up = :p, failed_up = :f,"
        " pending_children = :c, failed_children = 0, max_attempts = attempts + :m,"
        " error = NULL, exit_code = NULL, finished_at = NULL, result = NULL,"
        " ready_at = CASE WHEN :s = 'ready' THEN :t ELSE NULL END, agent_id = NULL"
        " WHERE id = :i",
        [{"i": r.task_run_id, "s": r.state, "p": r.pending_up, "f": r.failed_up,
          "c": r.pending_children, "m": r.extra_attempts, "t": now} for r in resets],
    )


@dataclass(frozen=True)
class TaskSettings:
    """What a task run keeps of its task's definition besides its place in the graph."""

    task: str
    trigger_rule: str
    priority: int
    pool: str | None
    label_set: int | None


def retarget_task_runs(tx: Tx, run_id: int, settings: Sequence[TaskSettings]) -> None:
    """A run moved to another version of its job (retry --latest): its task runs (items
    included) take that version's trigger rules, priorities, pools and label sets. A
    foreach parent takes no pool room (its items do)."""
    tx.many(
        "UPDATE task_runs SET trigger_rule = :rule, priority = :p, rank = -:p,"
        " pool = CASE WHEN kind = 'foreach' THEN NULL ELSE :pool END, label_set = :ls"
        " WHERE run_id = :r AND task = :t",
        [{"rule": s.trigger_rule, "p": s.priority, "pool": s.pool, "ls": s.label_set,
          "r": run_id, "t": s.task} for s in settings],
    )
    top = max((s.label_set or 0 for s in settings), default=0)
    if top:
        tx.run("UPDATE runs SET max_label_set = :m WHERE id = :r"
               " AND COALESCE(max_label_set, 0) < :m", {"m": top, "r": run_id})


def items_to_rerun(tx: Tx, parent_id: int) -> tuple[int, list[int]]:
    """How many items a foreach parent has, and the ids of those that did not succeed."""
    rows = tx.all("SELECT id, state FROM task_runs WHERE parent_id = :p ORDER BY item_index",
                  {"p": parent_id})
    return len(rows), [int(i) for i, state in rows if state != "succeeded"]


def reopen_run(tx: Tx, run_id: int, unfinished: int, ready: int, failed: int) -> None:
    """A finished run runs again (retry): halts lifted, counters set to what was reset, and
    `failed` to the failures it keeps."""
    tx.run(
        "UPDATE runs SET state = 'running', halt = NULL, halt_stage = NULL,"
        " unfinished = :u, running = 0, ready = :rd, failed = :f, finished_at = NULL,"
        " error = NULL WHERE id = :r",
        {"u": unfinished, "rd": ready, "f": failed, "r": run_id},
    )


# -- what a live display shows --------------------------------------------------------------
def task_run_state(tx: Tx, task_run_id: int) -> str | None:
    state = tx.scalar("SELECT state FROM task_runs WHERE id = :i", {"i": task_run_id})
    return None if state is None else str(state)


@dataclass(frozen=True)
class ActiveTaskRun:
    task: str
    item_index: int | None
    state: str  # running, retrying or failed
    attempts: int
    started_at: float | None
    error: str | None


def active_task_runs(tx: Tx, run_id: int, limit: int) -> list[ActiveTaskRun]:
    """The task runs of a run worth showing live: failed first, then retrying, then running
    (oldest start first)."""
    rows = tx.all(
        "SELECT task, item_index, state, attempts, started_at, error FROM task_runs"
        " WHERE run_id = :r AND kind <> 'barrier' AND state IN"
        " ('running', 'retrying', 'failed') ORDER BY state DESC, started_at LIMIT :k",
        {"r": run_id, "k": limit})
    return [ActiveTaskRun(str(task), item_index, str(state), int(attempts), started_at, error)
            for task, item_index, state, attempts, started_at, error in rows]
