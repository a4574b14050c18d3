"""What users ask of jobs (pause, resume, delete) and of runs: stop (drain), cancel (kill now),
and retry in place."""

from __future__ import annotations

from typing import Any

from taskplan.dataclass import dataclass
from taskplan.engine import definitions, runs, transitions
from taskplan.engine.context import Context
from taskplan.engine.definitions import job_spec, unknown_job
from taskplan.engine.records import Delta
from taskplan.engine.rules import resolve_trigger
from taskplan.errors import ConflictError, NotFoundError
from taskplan.model import (
    FAILED_LIKE,
    TERMINAL_RUN_STATES,
    Halt,
    JobSpec,
    OnFailure,
    RunState,
    TaskRunKind,
    TaskState,
    TriggerRule,
)
from taskplan.store import job_admin, ops, run_ops, sched_ops
from taskplan.store.db import Tx
from taskplan.store.ops import RunRow
from taskplan.store.run_ops import Reset, TaskSettings


@dataclass(frozen=True)
class _Repin:
    """The version a `retry --latest` moves its run to."""

    version_id: int
    spec: JobSpec


@dataclass(frozen=True)
class JobDeletion:
    name: str
    cancelled: list[int]  # active runs cancelled first (with force)
    runs: int  # runs of the job: kept as history, or deleted with purge_history
    purged: bool


# -- jobs -------------------------------------------------------------------------------
def pause_job(ctx: Context, name: str) -> bool:
    """Schedules and triggers of the job make no runs until resumed; manual runs still
    start. Returns False if it was paused already."""
    return _set_paused(ctx, name, True)


def resume_job(ctx: Context, name: str) -> bool:
    """Undo pause_job. Firings that fell in the pause are not made up (see backfill)."""
    return _set_paused(ctx, name, False)


def delete_job(ctx: Context, name: str, *, force: bool = False, purge_history: bool = False,
               dry_run: bool = False) -> JobDeletion:
    """Delete a job: it leaves `jobs`, the scheduler and triggers; its runs stay readable
    unless `purge_history`. Refused (ConflictError) while a run of it is active, unless
    `force`, which deletes it, then cancels those runs (their ends then fire nothing).
    With `purge_history`, a job deleted before with its history kept has that history
    purged now."""
    if purge_history:
        retired = _purge_retired(ctx, name, dry_run)
        if retired is not None:
            return retired
    callers = _callers_of(ctx, name)
    if callers and not force:
        raise ConflictError(
            f"job {name} is used by {', '.join(callers)}; delete or change those first,"
            " or delete with --force")
    cancelled: list[int] = []
    for _ in range(5):  # a run started between the read and the delete: read again
        with ctx.store.read() as tx:
            job = job_admin.live_job(tx, name)
            if job is None:
                raise unknown_job(tx, name)
            active = job_admin.active_runs(tx, job.job_id)
            total = job_admin.run_count(tx, job.job_id)
        if active and not force:
            ids = ", ".join(str(r) for r in sorted(active))
            raise ConflictError(
                f"job {name} has {len(active)} active run(s) ({ids}); stop or cancel them"
                " first, or delete with --force to cancel them")
        if dry_run:
            return JobDeletion(name, sorted(active), total, purge_history)
        with ctx.store.tx() as tx:
            job = job_admin.live_job(tx, name)
            if job is None:
                raise unknown_job(tx, name)
            active = job_admin.active_runs(tx, job.job_id)
            if active and not force:
                continue  # one started since it was read: refused as above
            # Retired before its active runs are cancelled: the end of one (in cancel_run's
            # own transaction) then fires no cross-job trigger waiting for this job, which a
            # deleted job never fires, and nothing starts a run of it any more.
            purged = purge_history and not active
            if purged:
                total = job_admin.purge_job(tx, job.job_id)
            else:
                job_admin.retire_job(tx, job.job_id, ctx.clock())
            tx.wake = True
        for _ in range(5):
            for run_id in active:  # queued ones first: no end of a running one starts them
                try:
                    cancel_run(ctx, run_id)
                    cancelled.append(run_id)
                except ConflictError:
                    pass  # it ended meanwhile
            with ctx.store.read() as tx:
                active = job_admin.active_runs(tx, job.job_id)
            if not active:
                break
        if active:
            raise ConflictError(f"job {name} was deleted but its runs"
                                f" {', '.join(map(str, active))} are still active")
        if purge_history and not purged:
            with ctx.store.tx() as tx:
                total = job_admin.purge_job(tx, job.job_id)
        return JobDeletion(name, sorted(cancelled), total, purge_history)
    raise ConflictError(f"job {name} keeps starting runs; pause it, then delete it")


def _purge_retired(ctx: Context, name: str, dry_run: bool) -> JobDeletion | None:
    """Purge the kept history of a job deleted before; None when no such job exists."""
    with ctx.store.tx() as tx:
        job_id = job_admin.retired_job(tx, name)
        if job_id is None:
            return None
        active = job_admin.active_runs(tx, job_id)
        if active:  # runs a forced delete cancelled, not ended yet
            raise ConflictError(f"job {name} was deleted but its runs"
                                f" {', '.join(map(str, sorted(active)))} are still active")
        total = job_admin.run_count(tx, job_id)
        if not dry_run:
            job_admin.purge_job(tx, job_id)
            tx.wake = True
    return JobDeletion(name, [], total, True)


def _callers_of(ctx: Context, name: str) -> list[str]:
    """The other jobs whose current version starts `name` (a `job:` task) or waits for it
    (a cross-job trigger), as "job fe (task sub)" / "job down (trigger)"."""
    with ctx.store.read() as tx:
        versions = [(j.name, j.version_id) for j in sched_ops.current_jobs(tx)]
    found = []
    for job, version_id in versions:
        if job == name:
            continue
        spec = job_spec(ctx, version_id)
        found += [f"job {job} (task {t.name})" for t in spec.tasks
                  if t.kind == "job" and t.command == name]
        if any(name in trig.after for trig in spec.triggers):
            found.append(f"job {job} (trigger)")
    return found


def pause_schedule(ctx: Context, name: str, key: str) -> bool:
    """Pause one schedule of a job (its firings are recorded as skipped; the job's other
    schedules and its triggers go on). Returns False if it was paused already."""
    return _set_schedule_paused(ctx, name, key, True)


def resume_schedule(ctx: Context, name: str, key: str) -> bool:
    return _set_schedule_paused(ctx, name, key, False)


def paused_schedules(ctx: Context, name: str) -> set[str]:
    """The keys of the job's schedules paused one at a time."""
    with ctx.store.read() as tx:
        job = job_admin.live_job(tx, name)
        if job is None:
            raise unknown_job(tx, name)
        return sched_ops.paused_schedules(tx, job.job_id)


def _set_schedule_paused(ctx: Context, name: str, key: str, paused: bool) -> bool:
    with ctx.store.read() as tx:
        job = job_admin.live_job(tx, name)
        if job is None:
            raise unknown_job(tx, name)
        version_id = job_admin.current_version_id(tx, job.job_id)
    keys = [s.key for s in job_spec(ctx, version_id).schedules]
    if key not in keys:
        known = ", ".join(keys) or "it has none"
        raise NotFoundError(f"job {name} has no schedule {key!r} (schedules: {known})")
    with ctx.store.tx() as tx:
        changed = sched_ops.set_schedule_paused(tx, job.job_id, key, paused, ctx.clock())
        if changed and not paused:
            _pause_ended(ctx, tx, job.job_id, [key])
        tx.wake = changed
        return changed


def _set_paused(ctx: Context, name: str, paused: bool) -> bool:
    with ctx.store.tx() as tx:
        changed = sched_ops.set_job_paused(tx, name, paused)
        if changed is None:
            raise unknown_job(tx, name)
        if changed and not paused:
            job = job_admin.live_job(tx, name)
            assert job is not None  # (just resumed, in this transaction)
            version_id = job_admin.current_version_id(tx, job.job_id)
            _pause_ended(ctx, tx, job.job_id,
                         [s.key for s in job_spec(ctx, version_id).schedules])
        tx.wake = changed
        return changed


def _pause_ended(ctx: Context, tx: Tx, job_id: int, keys: list[str]) -> None:
    """The firings that fell due during a pause are not made up, even when no scheduler ran
    to record them skipped then (it had crashed, or was stopped): each schedule's mark moves
    to now, or the next scheduler would take them for missed and on_misfire would make them
    up (run_all: a hundred runs at once)."""
    now = ctx.clock()
    for key in keys:
        sched_ops.advance_schedule(tx, job_id, key, now, 0)

# -- commands from users ----------------------------------------------------------------
def cancel_run(ctx: Context, run_id: int) -> str:
    """Kill the run's running tasks and end it cancelled; ConflictError if it has ended."""
    return _halt_by_user(ctx, run_id, Halt.USER_CANCEL)


def stop_run(ctx: Context, run_id: int) -> str:
    """Drain the run (nothing new starts); ConflictError if it has ended."""
    return _halt_by_user(ctx, run_id, Halt.USER_STOP)


def _halt_by_user(ctx: Context, run_id: int, halt: Halt) -> str:
    with ctx.store.tx() as tx:
        run = ops.run_row(tx, run_id, lock=True)
        if run is None:
            raise NotFoundError(f"no run {run_id}")
        if run.state in TERMINAL_RUN_STATES:
            verb = "cancel" if halt == Halt.USER_CANCEL else "stop"
            raise ConflictError(f"run {run_id} already {run.state}, nothing to {verb}")
        now = ctx.clock()
        if halt == Halt.USER_STOP:
            state = _drain(ctx, tx, run, now)
        else:
            ops.set_halt(tx, run_id, halt, None)
            run.halt = halt
            run = transitions.finalize(ctx, tx, run, now, cancel_running=True)
            transitions.run_ended(ctx, tx, run, now, None)
            state = run.state
        tx.wake = True
        return state


def _drain(ctx: Context, tx: Tx, run: RunRow, now: float) -> str:
    """Stop a run (nothing new starts, running tasks finish), and the child runs its running
    job tasks started, whose new tasks are new work of this run too (a cancel reaches them
    through transitions.finalize). Returns the run's state."""
    ops.set_halt(tx, run.id, Halt.USER_STOP, None)
    for child_id in run_ops.active_child_runs(tx, run.id):
        child = ops.run_row(tx, child_id, lock=True)
        if child is not None and child.state not in TERMINAL_RUN_STATES:
            # A child that ends now ends its job task (cancelled), which may end this run.
            _drain(ctx, tx, child, now)
    fresh = ops.run_row(tx, run.id)
    assert fresh is not None
    if fresh.state in TERMINAL_RUN_STATES:
        return fresh.state
    if fresh.running == 0:
        fresh = transitions.finalize(ctx, tx, fresh, now, cancel_running=False)
        transitions.run_ended(ctx, tx, fresh, now, None)
    elif fresh.state != RunState.STOPPING:
        ops.set_run_state(tx, run.id, RunState.STOPPING, now=now)
        fresh.state = str(RunState.STOPPING)
    return fresh.state


def stale_pin(ctx: Context, run_id: int) -> tuple[str, int, int] | None:
    """(job, pinned version number, current number) when a newer version is current."""
    with ctx.store.read() as tx:
        found = ops.pinned_and_current(tx, run_id)
    if found is None:
        raise NotFoundError(f"no run {run_id}")
    if found.current_id is None or found.current is None or found.current_id == found.pinned_id:
        return None
    return found.job, found.pinned, found.current


def _latest_spec(ctx: Context, run_id: int) -> _Repin | None:
    """The job's current version for `retry --latest`, if it differs from the pinned one;
    ConflictError when its tasks or their wiring changed (in place would not fit)."""
    with ctx.store.read() as tx:
        found = ops.pinned_and_current(tx, run_id)
    if found is None:
        raise NotFoundError(f"no run {run_id}")
    job, pinned, current = found.job, found.pinned, found.current
    if found.current_id is None:
        raise ConflictError(f"job {job} was deleted; run {run_id} can only be retried"
                            f" on its own version (v{pinned})")
    if found.current_id == found.pinned_id:
        return None
    old, new = job_spec(ctx, found.pinned_id), job_spec(ctx, found.current_id)

    def shape(spec: JobSpec) -> dict[str, tuple[Any, ...]]:
        return {t.name: (t.kind, tuple(sorted(t.depends_on)), t.stage,
                         t.foreach is not None) for t in spec.tasks}

    before, after = shape(old), shape(new)
    if before != after:
        added = sorted(set(after) - set(before))
        removed = sorted(set(before) - set(after))
        changed = sorted(n for n in set(before) & set(after) if before[n] != after[n])
        parts = [f"{what}: {', '.join(names)}" for what, names in
                 (("added", added), ("removed", removed), ("rewired", changed)) if names]
        raise ConflictError(
            f"run {run_id} cannot be retried on {job} v{current}: its tasks differ from"
            f" v{pinned} ({'; '.join(parts)}); start a new run with `taskplan run {job}`")
    return _Repin(found.current_id, new)


def retry_run(ctx: Context, run_id: int, task: str | None = None, *, latest: bool = False) -> int:
    """Rerun in place every task run of a finished run that did not succeed.

    Succeeded task runs keep their state and results. With `task`, only that task and
    the task runs downstream of it are reconsidered. Returns how many were reset;
    ConflictError if the run is not finished or nothing in scope is left to rerun.

    With `latest`, the run is first moved to its job's current version (same tasks and
    wiring required), so the rerun executes the current definition.
    """
    # The definitions are read before the write transaction: job_spec opens its own
    # read, which SQLite refuses inside this thread's open transaction.
    with ctx.store.read() as tx:
        owner = job_admin.job_of_run(tx, run_id)
    if owner is not None and not owner.exists:
        raise ConflictError(f"run {run_id} belongs to job {owner.job}, which was deleted;"
                            " apply the job again to retry its runs")
    repin = _latest_spec(ctx, run_id) if latest else None
    spec = (repin.spec if repin is not None
            else job_spec(ctx, definitions.run_meta(ctx, run_id).version_id))
    with ctx.store.tx() as tx:
        run = ops.run_row(tx, run_id, lock=True)
        if run is None:
            raise NotFoundError(f"no run {run_id}")
        if run.state not in TERMINAL_RUN_STATES:
            raise ConflictError(f"run {run_id} is {run.state}; retry takes a finished run")
        if run.state == RunState.SUCCEEDED:
            raise ConflictError(f"run {run_id} already succeeded, nothing to retry")
        if repin is not None:
            ops.repin_run(tx, run_id, repin.version_id, str(spec.on_failure), spec.max_parallel,
                          spec.priority)
            # The task runs' copies of what the version says of each task, which claims and
            # trigger rules read (the wiring is the same: _latest_spec checked it).
            run_ops.retarget_task_runs(tx, run_id, [
                TaskSettings(t.name, str(t.trigger), t.priority, t.pool,
                             runs.label_set(ctx, tx, t.agent_labels)) for t in spec.tasks])
            definitions.forget_run_meta(ctx, run_id)
        graph = _RunGraph(run_ops.task_runs_for_retry(tx, run_id), run_ops.edges_of_run(tx, run_id))
        scope = graph.scope(run_id, task)
        if task is not None:
            scope |= graph.halted_inputs(scope, spec)
        disabled = {t.name for t in spec.tasks if not t.enabled}
        redo = {t.id for t in graph.top if t.id in scope
                and graph.state[t.id] != TaskState.SUCCEEDED and t.task not in disabled}
        # A task that did not succeed and that the version a `retry --latest` moves to
        # disables ends skipped, as that version's runs record it (retry leaves the ones
        # skipped already as they are).
        redo |= {t.id for t in graph.top if t.id in scope and t.task in disabled
                 and graph.state[t.id] not in (TaskState.SUCCEEDED, TaskState.SKIPPED)}
        if not redo:
            # Nothing to rerun: the finished run is left exactly as it was.
            what = f"task {task} and what depends on it" if task else "every task"
            off = sorted({t.task for t in graph.top if t.id in scope and t.task in disabled})
            if off:  # retry leaves them skipped: "succeeded" would not be true of them
                shown = ", ".join(off[:3]) + (f" and {len(off) - 3} more" if len(off) > 3
                                              else "")
                rest = any(t.id in scope and t.task not in disabled
                           and t.kind != TaskRunKind.BARRIER for t in graph.top)
                raise ConflictError(
                    f"run {run_id}: nothing to retry in {what}: {shown}"
                    f" {'is' if len(off) == 1 else 'are'} disabled (enabled: false)"
                    + (", the rest succeeded" if rest else ""))
            raise ConflictError(f"run {run_id}: {what} already succeeded, nothing to retry")
        now = ctx.clock()
        resets, settle, ready, carried = _resets(graph, redo, spec)
        run_ops.reset_task_runs(tx, resets, now)
        # Failures the retry leaves as they are (outside `--task`'s scope) still fail the run.
        reset_ids = {r.task_run_id for r in resets}
        # The items of a foreach it reruns count with their foreach: run again, or left as
        # they ended under one that then does not run.
        kept = sum(1 for i, st in graph.state.items() if i not in reset_ids and st in _FAILURES
                   and graph.parent.get(i) not in redo)
        run_ops.reopen_run(tx, run_id, len(resets), ready, kept)
        settled = {(i, str(st)) for i, st in settle}
        ops.add_events(tx, [(now, run_id, None, "running", "retry")]
                       + [(now, run_id, r.task_run_id, r.state, "retry") for r in resets
                          if (r.task_run_id, r.state) not in settled])
        fresh = ops.run_row(tx, run_id)
        assert fresh is not None
        delta = Delta()
        firsts = [(ops.task_run(tx, i), st) for i, st in settle]
        transitions.settle(tx, run_id, fresh.on_failure,
                           [(t, st) for t, st in firsts if t is not None], now, delta,
                           carried=carried)
        transitions.close_step(ctx, tx, run_id, fresh, now, delta, None)
        tx.wake = True
        # Counted as `status` lists them: stage barriers are no rows of it.
        barriers = {t.id for t in graph.top if t.kind == TaskRunKind.BARRIER}
        return sum(1 for r in resets if r.task_run_id not in barriers)


class _RunGraph:
    """A finished run's task runs and edges, as retry reasons about them."""

    def __init__(self, rows: list[run_ops.RetryTaskRun], edges: list[tuple[int, int]]) -> None:
        self.top = [r for r in rows if r.parent_id is None]
        self.state = {r.id: r.state for r in rows}
        self.downs: dict[int, list[int]] = {}
        self.ups: dict[int, list[int]] = {}
        for up, down in edges:
            self.downs.setdefault(up, []).append(down)
            self.ups.setdefault(down, []).append(up)
        self.children: dict[int, list[tuple[int, str]]] = {}
        self.parent: dict[int, int] = {}
        for r in rows:
            if r.parent_id is not None:
                self.children.setdefault(r.parent_id, []).append((r.id, r.state))
                self.parent[r.id] = r.parent_id

    def carrying_failure(self, spec: JobSpec) -> set[int]:
        """The top-level task runs that ended skipped because an upstream failed (outside
        `continue` they end skipped, not upstream_failed): as when the run ran, they count as
        failed for their dependants. A task skipped by its trigger rule (one_failed), by
        `enabled: false` or because its run halted before it started does not."""
        rules = {t.name: t.trigger for t in spec.tasks if t.enabled}
        waiting = {t.id: 0 for t in self.top}
        for i in waiting:
            waiting[i] = sum(1 for u in self.ups.get(i, ()) if u in waiting)
        todo = [i for i, n in waiting.items() if n == 0]
        kinds = {t.id: (t.kind, t.task) for t in self.top}
        carries: set[int] = set()
        while todo:
            i = todo.pop()
            kind, name = kinds[i]
            if (self.state[i] == TaskState.SKIPPED and kind != TaskRunKind.BARRIER
                    and rules.get(name) == TriggerRule.ALL_SUCCESS
                    and any(self.state[u] in _FAILED_UPSTREAM or u in carries
                            for u in self.ups.get(i, ()))):
                carries.add(i)
            for d in self.downs.get(i, ()):
                if d in waiting:
                    waiting[d] -= 1
                    if waiting[d] == 0:
                        todo.append(d)
        return carries

    def halted_inputs(self, scope: set[int], spec: JobSpec) -> set[int]:
        """The task runs outside `scope` that tasks of it wait for (directly, or through
        others of these) and that never started because their run halted (on_failure stop,
        cancel or finish_stage; `stop`, `cancel`): they run again with the scope, or its
        tasks would run without them as if they had been skipped on purpose.

        An enabled task with trigger all_success or all_done ends skipped only so (its rule
        never skips it; one with a failed upstream carries the failure instead); a
        one_failed one may have been skipped by its rule, and is left as it ended."""
        waits = {t.name for t in spec.tasks
                 if t.enabled and t.trigger != TriggerRule.ONE_FAILED}
        names = {t.id: (t.kind, t.task) for t in self.top}
        carries = self.carrying_failure(spec)
        found: set[int] = set()
        todo = [u for i in scope for u in self.ups.get(i, ())]
        while todo:
            u = todo.pop()
            if u in scope or u in found or u not in names:
                continue
            kind, name = names[u]
            if kind == TaskRunKind.BARRIER:
                # A stage barrier: what the stage's tasks (and the stages below) left
                todo.extend(self.ups.get(u, ()))
                if self.state[u] != TaskState.SUCCEEDED:
                    found.add(u)
                continue
            if (self.state[u] == TaskState.SKIPPED and name in waits
                    and u not in carries):
                found.add(u)
                todo.extend(self.ups.get(u, ()))
        return found

    def scope(self, run_id: int, task: str | None) -> set[int]:
        """The top-level task runs a retry reconsiders: all, or `task` and its downstream."""
        if task is None:
            return {t.id for t in self.top}
        # A stage barrier (@stage1) is no task of the job's: not one a user may name.
        starts = [t.id for t in self.top if t.task == task and t.kind != TaskRunKind.BARRIER]
        if not starts:
            import difflib
            import re

            names = sorted({t.task for t in self.top if t.kind != TaskRunKind.BARRIER})
            item = re.fullmatch(r"(.+)\[(\d+)\]", task)
            if item and any(t.task == item[1] and t.kind == TaskRunKind.FOREACH
                            for t in self.top):
                # An item as `status` names it: its foreach is what a retry takes.
                raise NotFoundError(
                    f"run {run_id} has no task {task!r}: {item[1]}[{item[2]}] is an item of"
                    f" foreach {item[1]}; retry --task {item[1]} reruns its items that did"
                    " not succeed")
            guess = difflib.get_close_matches(task, names, n=1)
            raise NotFoundError(f"run {run_id} has no task {task!r}"
                                + (f"; did you mean {guess[0]!r}?" if guess else ""))
        scope: set[int] = set()
        todo = list(starts)
        while todo:
            n = todo.pop()
            if n not in scope:
                scope.add(n)
                todo.extend(self.downs.get(n, []))
        return scope


_FAILED_UPSTREAM = FAILED_LIKE | {TaskState.CANCELLED}
# What the run's `failed` counter counts (transitions.settle): its run fails if any is left.
_FAILURES = frozenset({TaskState.FAILED, TaskState.CANCELLED})


def _resets(graph: _RunGraph, redo: set[int], spec: JobSpec
            ) -> tuple[list[Reset], list[tuple[int, TaskState]], int, set[int]]:
    """The new state of each task run to rerun; those that resolve at once (to be settled);
    how many become ready; which of those end skipped for a failed upstream (outside
    `continue`), counting as failed for their own dependants."""
    resets: list[Reset] = []
    settle: list[tuple[int, TaskState]] = []
    ready = 0
    carries = graph.carrying_failure(spec)
    skip_failed = spec.on_failure != OnFailure.CONTINUE
    carried: set[int] = set()
    for t in graph.top:
        if t.id not in redo:
            continue
        task_spec = None if t.kind == TaskRunKind.BARRIER else spec.task(t.task)
        if task_spec is not None and not task_spec.enabled:
            # Skipped at once, whatever its upstreams, as at a run's creation.
            resets.append(Reset(t.id, str(TaskState.SKIPPED), 0, 0, 0, 0))
            settle.append((t.id, TaskState.SKIPPED))
            continue
        extra = 1 + (task_spec.retries if task_spec else 0)
        kids = [k for k, state in graph.children.get(t.id, []) if state != TaskState.SUCCEEDED]
        ups = graph.ups.get(t.id, [])
        pending = sum(1 for u in ups if u in redo)
        # A cancelled upstream counts as failed, as when the run first ran.
        failed = sum(1 for u in ups if u not in redo
                     and (graph.state[u] in _FAILED_UPSTREAM or u in carries))
        if kids and not pending:
            # An expanded foreach reruns its unfinished items under the same parent.
            resets.extend(Reset(k, "ready", 0, 0, 0, extra) for k in kids)
            ready += len(kids)
            new_state = "running"
        elif pending:
            # It waits for its upstreams that rerun, as when the run first ran; an expanded
            # foreach keeps its items, and those that did not succeed run again once it
            # starts (subruns.expand_foreach), or stay as they ended if its trigger rule
            # then says it does not run.
            new_state = "pending"
            kids = []
        else:
            rule = str(task_spec.trigger) if task_spec else "all_done"
            # With no upstreams at all it is ready, whatever its rule, as at the run's
            # creation (rules.initial_states): there is nothing for the rule to judge.
            resolved = (resolve_trigger(t.kind, rule, failed) if ups else TaskState.READY)
            if (skip_failed and resolved == TaskState.UPSTREAM_FAILED
                    and t.kind != TaskRunKind.BARRIER):
                # As transitions.settle ends it when the run first ran.
                resolved = TaskState.SKIPPED
                carried.add(t.id)
            new_state = str(resolved)
            if resolved == TaskState.READY:
                ready += 1
            else:
                settle.append((t.id, resolved))
        resets.append(Reset(t.id, new_state, pending, failed, len(kids), extra))
    return resets, settle, ready, carried
