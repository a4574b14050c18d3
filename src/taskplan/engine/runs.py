"""Creating runs: the task runs of a pinned version and their edges laid down in one
transaction, with the initial states the rules give them."""

from __future__ import annotations

import threading
from typing import Any

from taskplan.engine import definitions, transitions
from taskplan.engine.context import Context
from taskplan.engine.rules import initial_states, plan_upstreams
from taskplan.model import JobSpec, RunState, TaskRunKind, TaskState, TriggerRule
from taskplan.store import ops, sched_ops
from taskplan.store.db import Tx


def create_run(ctx: Context, version_id: int, params: dict[str, Any] | None = None, *,
               trigger: str = "manual", trigger_ref: str | None = None,
               parent_task_run_id: int | None = None, root_run_id: int | None = None,
               tx: Tx | None = None, queued: bool = False, fire_at: float | None = None,
               pin_agent_id: int | None = None) -> int:
    """A new run; with `queued` it stays `queued` (no claims) until something starts it.
    `fire_at`: the schedule instant it stands for (templates' `run.fire_time`).
    `pin_agent_id`: only that agent claims the run's task runs while it is alive (a
    foreground `taskplan run`); see docs/routing.md."""
    spec = definitions.job_spec(ctx, version_id, tx)
    merged = {**spec.params, **(params or {})}
    if tx is not None:
        return create_run_in(ctx, tx, spec, version_id, merged, trigger, trigger_ref,
                             parent_task_run_id, root_run_id, queued, fire_at, pin_agent_id)
    with ctx.store.tx() as new_tx:
        return create_run_in(ctx, new_tx, spec, version_id, merged, trigger, trigger_ref,
                             parent_task_run_id, root_run_id, queued, fire_at, pin_agent_id)


def pin_run(ctx: Context, run_id: int, agent_id: int | None) -> None:
    """Pin a run to an agent (None: unpin), e.g. before a foreground `retry`."""
    with ctx.store.tx() as tx:
        ops.set_run_routing(tx, run_id, pin_agent_id=agent_id)


def label_set(ctx: Context, tx: Tx, labels: tuple[str, ...]) -> int | None:
    """The label_sets id of a task's required labels (None: it needs none)."""
    if not labels:
        return None
    key = ",".join(labels)
    found = ctx.labels.ids.get(key)
    if found is None:
        found, committed = ops.label_set_id(tx, key)
        if committed:  # a new row may still roll back with this transaction
            ctx.labels.ids[key] = found
    return found


def create_run_in(ctx: Context, tx: Tx, spec: JobSpec, version_id: int,
                  params: dict[str, Any], trigger: str, trigger_ref: str | None,
                  parent_task_run_id: int | None, root_run_id: int | None,
                  queued: bool = False, fire_at: float | None = None,
                  pin_agent_id: int | None = None) -> int:
    """create_run inside the caller's transaction, with the params already merged."""
    now = ctx.clock()
    run_id = ops.insert_run(
        tx, job_id=sched_ops.job_of_version(tx, version_id), version_id=version_id,
        params=params, trigger=trigger, trigger_ref=trigger_ref, priority=spec.priority,
        max_parallel=spec.max_parallel, on_failure=str(spec.on_failure),
        parent_task_run_id=parent_task_run_id, root_run_id=root_run_id, now=now,
        fire_at=fire_at,
    )
    ups = plan_upstreams(spec)
    initial = initial_states(spec, ups)
    rows: list[dict[str, Any]] = []
    ready = unfinished = 0
    max_label_set = 0
    for name in ups:
        is_barrier = name.startswith("@")
        task = None if is_barrier else spec.task(name)
        task_labels = label_set(ctx, tx, task.agent_labels) if task else None
        max_label_set = max(max_label_set, task_labels or 0)
        state, pend = initial[name]
        ready += state == TaskState.READY
        unfinished += state in (TaskState.READY, TaskState.PENDING)
        rows.append({
            "run": run_id, "task": name, "parent": None, "idx": None, "item": None,
            "kind": str(TaskRunKind.BARRIER if is_barrier else TaskRunKind.FOREACH
                        if task and task.foreach else TaskRunKind.TASK),
            "stage": int(name[len("@stage"):]) if is_barrier else (task.stage if task
                                                                    else None),
            "state": str(state),
            "rule": str(task.trigger) if task else str(TriggerRule.ALL_DONE),
            "pend": pend,
            "prio": task.priority if task else 0,
            "rank": -(task.priority if task else 0),
            # A foreach parent takes no pool room: its items do.
            "pool": task.pool if task and not task.foreach else None,
            "maxa": (task.retries + 1) if task else 1,
            "ready_at": now if state == TaskState.READY else None,
            "ls": task_labels,
        })
    ops.insert_task_runs(tx, rows)
    if pin_agent_id is not None or max_label_set:
        ops.set_run_routing(tx, run_id, pin_agent_id=pin_agent_id,
                            max_label_set=max_label_set)
    ids = ops.task_ids(tx, run_id)
    ops.insert_edges(tx, [(ids[u], ids[d]) for d, us in ups.items() for u in us])
    ops.bump_run(tx, run_id, unfinished=unfinished, ready=ready)
    ended = [(ids[r["task"]], r["state"]) for r in rows
             if r["state"] not in (TaskState.READY, TaskState.PENDING)]
    if ended:  # disabled tasks, and what they resolved at creation
        ops.set_states(tx, ended, now)
    if queued:
        ops.add_events(tx, [(now, run_id, None, str(RunState.QUEUED), None)])
    else:
        ops.set_run_state(tx, run_id, RunState.RUNNING, now=now, started=True)
    ops.add_events(tx, [(now, run_id, ids[r["task"]], r["state"], None)
                        for r in rows if r["state"] != TaskState.PENDING])
    if not unfinished and not queued:  # every task disabled: nothing to wait for
        ops.set_run_state(tx, run_id, RunState.SUCCEEDED, now=now, finished=True)
        run = ops.run_row(tx, run_id)
        assert run is not None
        transitions.run_ended(ctx, tx, run, now, None)
    if spec.deadline is not None:
        _set_deadline(ctx, tx, spec, run_id)
    tx.wake = True
    return run_id


def queued_runs_started(ctx: Context, tx: Tx, run_ids: list[int]) -> None:
    """Queued runs just started, in the transaction that starts them: a deadline counted from
    the start (`of: start`) is fixed now, so that it holds even if no deadline checker looks
    before the run ends; and a run with nothing to run (every task `enabled: false`) ends
    `succeeded` now, as it does when created running, or it would stay running for good, and
    the runs queued behind it with it."""
    from taskplan.store import deadlines

    for run_id, version_id in deadlines.pending(tx, run_ids):
        spec = definitions.job_spec(ctx, version_id, tx)
        if spec.deadline is not None:
            _set_deadline(ctx, tx, spec, run_id)
    _end_empty(ctx, tx, run_ids)


# The runs `_end_empty` of this thread still has to look at, while it runs: the end of one
# starts the next queued runs, which are handed to it instead of recursing (a backfill of a
# thousand such runs, one at a time, would otherwise nest a thousand run ends).
_ending = threading.local()


def _end_empty(ctx: Context, tx: Tx, run_ids: list[int]) -> None:
    todo: list[int] | None = getattr(_ending, "todo", None)
    if todo is not None:
        todo.extend(run_ids)
        return
    todo = _ending.todo = list(run_ids)
    try:
        while todo:
            run = ops.run_row(tx, todo.pop(0), lock=True)
            if run is None or run.state != RunState.RUNNING or run.unfinished:
                continue
            now = ctx.clock()
            ops.set_run_state(tx, run.id, RunState.SUCCEEDED, now=now, finished=True)
            run.state = str(RunState.SUCCEEDED)
            tx.wake = True
            transitions.run_ended(ctx, tx, run, now, None)
    finally:
        _ending.todo = None


def _set_deadline(ctx: Context, tx: Tx, spec: JobSpec, run_id: int) -> None:
    from taskplan.forecast.deadlines import PENDING, deadline_at
    from taskplan.store import deadlines

    assert spec.deadline is not None
    fired, started, backfilled = deadlines.run_times(tx, run_id)
    if backfilled and spec.deadline.of != "start":
        # Counted from a firing in the past, it could only be missed, once per backfilled
        # day (an alert each); a deadline counted from the start still says something.
        return
    at = deadline_at(spec.deadline, spec.timezone or ctx.default_tz, fired, started)
    deadlines.set_deadline(tx, run_id, at, None if at is not None else PENDING)
