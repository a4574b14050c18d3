"""Where a task's end is decided: an ended attempt is recorded (or retried), its state
propagates through the graph (dependants readied or skipped, foreach parents closed),
on_failure applies, and the run ends when nothing is left.

Every function here runs inside the caller's write transaction. The cost of a transition is
O(its edges): finishing a task run decrements a counter on each dependant and readies those
that reach zero.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Collection, Iterable, Sequence

from taskplan.engine import definitions
from taskplan.engine.context import Context
from taskplan.engine.records import (
    NEVER_STARTED,
    Claim,
    Delta,
    Outcome,
    RunEnd,
    StepResult,
    TaskEnd,
    UnnamedEnds,
)
from taskplan.engine.rules import resolve_trigger, retry_delay
from taskplan.model import (
    FAILED_LIKE,
    TERMINAL_RUN_STATES,
    Halt,
    OnFailure,
    RunState,
    TaskRunKind,
    TaskState,
)
from taskplan.redact import mask_url
from taskplan.store import notify_ops, ops, run_ops
from taskplan.store.db import Tx
from taskplan.store.ops import RunRow, TaskRunRow, dumps_value

log = logging.getLogger(__name__)

USER_HALTS = (Halt.USER_STOP, Halt.USER_CANCEL)


def finish_run(ctx: Context, tx: Tx, finished: Sequence[tuple[Claim, Outcome]], now: float,
               result: StepResult) -> None:
    """The finishes of one run in one step, in order.

    Successes of a run with no halt are recorded together (`_finish_batch`): one read of the
    run row, one fenced UPDATE of their task runs, one counter bump. That is the same as
    finishing them one by one: a success applies no on_failure policy and, with no halt, a
    close before the last one ends nothing (each later one is still running, hence
    unfinished). Anything else (a failure, a cancel, a halted run) first closes what was
    batched, then takes the one-by-one path, which reads the run afresh.
    """
    if ctx.one_by_one:
        for claim, outcome in finished:
            finish(ctx, tx, claim, outcome, now, result)
        return
    if len(finished) == 1:
        # One attempt (a chain's hop): nothing to batch, and `finish` reads the run only when
        # its end needs the row (or its lock must come first).
        finish(ctx, tx, finished[0][0], finished[0][1], now, result)
        return
    run: RunRow | None = None
    halted = False  # a halt is never lifted inside a step
    batch: list[tuple[Claim, Outcome]] = []
    ids: set[int] = set()
    for claim, outcome in finished:
        if outcome.expanded:
            continue  # already recorded by expand_foreach / start_child_run
        if (outcome.state == TaskState.SUCCEEDED and not halted
                and claim.task_run_id not in ids):
            if run is None:
                run = ops.run_row(tx, claim.run_id, lock=True)
                assert run is not None
                halted = run.halt is not None
            if not halted:
                batch.append((claim, outcome))
                ids.add(claim.task_run_id)
                continue
        if batch:
            assert run is not None
            _finish_batch(ctx, tx, run, batch, now, result)
            batch, ids = [], set()
        finish(ctx, tx, claim, outcome, now, result)
        run = None  # it may have changed: read it again for the next batch
    if batch:
        assert run is not None
        _finish_batch(ctx, tx, run, batch, now, result)


def _finish_batch(ctx: Context, tx: Tx, run: RunRow, batch: Sequence[tuple[Claim, Outcome]],
                  now: float, result: StepResult) -> None:
    """Successful attempts of one run (distinct task runs, the run not halted)."""
    if len(batch) == 1:  # the plain statements are cheaper for one (a chain's hop)
        finish(ctx, tx, batch[0][0], batch[0][1], now, result, run=run)
        return
    ends = [o.ended(now) for _, o in batch]
    rows = ops.end_running_many(tx, [
        (c.task_run_id, c.attempt, str(o.state), ended, o.exit_code,
         None if o.result is None else dumps_value(o.result), o.error)
        for (c, o), ended in zip(batch, ends, strict=True)
    ])
    done: list[tuple[int, int, str, float, int | None, str | None]] = []
    for (claim, outcome), ended in zip(batch, ends, strict=True):
        if claim.task_run_id not in rows:
            result.stale.append(claim.task_run_id)  # fenced off: a newer owner or a cancel
        else:
            done.append((claim.task_run_id, claim.attempt,
                         "lost" if outcome.retry_now else str(outcome.state), ended,
                         outcome.exit_code, outcome.error))
    if not done:
        return
    ops.finish_attempts(tx, done)
    delta = Delta()
    for claim, outcome in batch:
        got = rows.get(claim.task_run_id)
        if got is None:
            continue
        row, has_dependants = got
        delta.running -= 1
        settle(tx, run.id, run.on_failure, [(row, outcome.state)], now, delta,
               detail=outcome.error, leaves=() if has_dependants else (row.id,))
    close_step(ctx, tx, run.id, run, now, delta, result)


def finish(ctx: Context, tx: Tx, claim: Claim, outcome: Outcome, now: float,
           result: StepResult, run: RunRow | None = None) -> None:
    """Record one ended attempt: a retry, or the end of its task run. `run`: the run's row as
    this transaction last saw it, when nothing changed it since (else it is read here when
    needed). A success needs only the run's on_failure, which is its pinned version's (a run
    takes it from its version, also when `retry --latest` pins another), so where no row
    lock must come first (SQLite) and this process knows the version (its slot ran the task)
    it reads no run row."""
    if outcome.expanded:
        return
    spec = None if tx.dialect.row_locks else definitions.known_spec(ctx, claim.version_id)
    if run is None and (outcome.state != TaskState.SUCCEEDED or spec is None):
        run = ops.run_row(tx, claim.run_id, lock=True)
        assert run is not None
    retry = (outcome.state == TaskState.FAILED and claim.attempt < claim.max_attempts
             and run is not None and _may_retry(run, claim))
    state = TaskState.RUNNING if retry else outcome.state
    ended = outcome.ended(now)
    row = ops.end_running(
        tx, claim.task_run_id, claim.attempt, str(state), ended, outcome.exit_code,
        None if outcome.result is None else dumps_value(outcome.result), outcome.error,
    )
    if row is None:
        result.stale.append(claim.task_run_id)  # fenced off: a newer owner or a cancel
        return
    attempt_state = "lost" if outcome.retry_now else str(outcome.state)
    ops.finish_attempt(tx, claim.task_run_id, claim.attempt, attempt_state, ended,
                       outcome.exit_code, outcome.error)
    if retry:
        _retry(ctx, tx, claim, outcome, now, result)
        return
    delta = Delta(running=-1)
    if run is not None:
        on_failure = run.on_failure
    else:
        assert spec is not None  # left unread only for a success of a version known here
        on_failure = str(spec.on_failure)
    settle(tx, claim.run_id, on_failure, [(row, outcome.state)], now, delta,
           detail=outcome.error)
    close_step(ctx, tx, claim.run_id, run, now, delta, result)


def _may_retry(run: RunRow, claim: Claim) -> bool:
    """A halted run retries nothing, but finish_stage: the stage it lets finish (the failed
    task's and lower) finishes as it would have, retries included."""
    if run.halt is None:
        return True
    return (run.halt == Halt.FINISH_STAGE and run.halt_stage is not None
            and (claim.stage or 0) <= run.halt_stage)


def _retry(ctx: Context, tx: Tx, claim: Claim, outcome: Outcome, now: float,
           result: StepResult) -> None:
    """A failed attempt with attempts left: ready again at once, or `retrying` until due."""
    delay = 0.0
    if not outcome.retry_now:
        spec = definitions.task_spec(ctx, claim.version_id, claim.task)
        delay = retry_delay(spec, _round_failures(tx, claim, spec.retries))
    due = now + delay
    result.retried.append(claim.task_run_id)
    log.info("retry: run %s task %s attempt %s/%s failed, next in %.1fs: %s",
             claim.run_id, claim.task, claim.attempt, claim.max_attempts, delay,
             mask_url(outcome.error or "failed"),
             extra={"event": "retry", "run_id": claim.run_id, "task": claim.task,
                    "task_run_id": claim.task_run_id, "attempt": claim.attempt,
                    "delay": delay})
    if delay <= 0:
        ops.set_states(tx, [(claim.task_run_id, "ready")], now)
        ops.bump_run(tx, claim.run_id, running=-1, ready=1)
        ops.add_events(tx, [(now, claim.run_id, claim.task_run_id, "ready", outcome.error)])
        if not outcome.retry_now:  # retried at once (no delay): still a retry
            notify_ops.record(tx, [(now, claim.run_id, claim.task_run_id, "retrying",
                                    outcome.error)])
        return
    ops.set_retrying(tx, claim.task_run_id, due, outcome.error, outcome.exit_code)
    ops.bump_run(tx, claim.run_id, running=-1)
    ops.add_events(tx, [(now, claim.run_id, claim.task_run_id, "retrying", outcome.error)])
    if result.next_due is None or due < result.next_due:
        result.next_due = due



def _round_failures(tx: Tx, claim: Claim, retries: int) -> int:
    """How many attempts of the task run's current round failed, the one just ended included.

    A round is what one budget of `retries` + 1 tries allows: the run's first, then each
    `taskplan retry`, which sets max_attempts to the attempts so far plus that budget. The
    backoff counts failures only: an attempt lost with its agent used a try (the budget) but
    did not fail, and one given back unstarted used none (max_attempts grew with it).
    """
    used = retries + 1 - (claim.max_attempts - claim.attempt)  # tries of this round so far
    failures = tries = 0
    for state, error in ops.attempt_ends(tx, claim.task_run_id, claim.attempt):
        if tries >= used:
            break
        if state == "lost" and error == NEVER_STARTED:
            continue
        tries += 1
        failures += state == TaskState.FAILED
    return max(failures, 1)

def settle(tx: Tx, run_id: int, on_failure: str, first: Iterable[tuple[TaskRunRow, TaskState]],
           now: float, delta: Delta, detail: str | None = None, leaves: Collection[int] = (),
           carried: Collection[int] = ()) -> None:
    """Propagate terminal states through the graph inside the current transaction, in run
    `run_id` whose on_failure policy is `on_failure`.

    `leaves`: task runs known to have no dependants (no task_edges from them), whose
    decrement would change nothing. `carried`: those of `first` that end skipped for a
    failed upstream, and so count as failed for their dependants.
    """
    work: deque[tuple[TaskRunRow, TaskState]] = deque(first)
    first_id = work[0][0].id if work else None
    # The first rows' ends are their attempts', which the callers report; each task run is
    # settled once, so they are the first ones popped.
    attempted = len(work)
    # Outside `continue`, a task that never starts because an upstream failed ends
    # `skipped` (docs/job-file.md), yet still counts as failed for its own dependants' rules.
    skip_failed = on_failure != OnFailure.CONTINUE
    # Read when first needed (rarely): a run halted by `stop` or `cancel` starts nothing
    # more either, and its tasks that never start end skipped.
    user_halted: bool | None = None
    carries_failure: set[int] = set(carried)
    while work:
        row, state = work.popleft()
        attempted -= 1
        delta.unfinished -= 1
        delta.events.append((now, run_id, row.id, str(state),
                             detail if row.id == first_id else None))
        if attempted < 0 and row.kind != TaskRunKind.BARRIER:
            # Ended by the graph, not by an attempt: a dependant that will not run, or a
            # foreach whose items are all done (the only one that can succeed this way).
            delta.ends.append(TaskEnd(run_id, row.id, row.task, str(state), _why(row, state)))
        if state == TaskState.FAILED:
            delta.failed += 1
            if row.kind == TaskRunKind.TASK or (row.kind == TaskRunKind.FOREACH
                                               and not row.failed_children):
                delta.policy_failures.append(row)
        elif state == TaskState.CANCELLED:
            # Killed by its agent stopping, on a run nobody cancelled: the run did not do its
            # work (a cancelled run ends cancelled whatever this counter says).
            delta.failed += 1
        failed = 1 if (state in FAILED_LIKE or state == TaskState.CANCELLED
                       or row.id in carries_failure) else 0
        if row.parent_id is not None:
            parent = ops.child_done(tx, row.parent_id, failed)
            if parent is not None and parent.pending_children == 0:
                pstate = TaskState.FAILED if parent.failed_children else TaskState.SUCCEEDED
                delta.writes.append((parent.id, str(pstate)))
                work.append((parent, pstate))
            continue
        if row.id in leaves:
            continue
        for dep in ops.decrement_dependants(tx, row.id, failed):
            if dep.pending_up > 0:
                continue
            new = resolve_trigger(dep.kind, dep.trigger_rule, dep.failed_up)
            if new == TaskState.UPSTREAM_FAILED and dep.kind != TaskRunKind.BARRIER:
                if not skip_failed and user_halted is None:
                    halted = ops.run_row(tx, run_id)
                    user_halted = halted is not None and halted.halt in USER_HALTS
                if skip_failed or user_halted:
                    new = TaskState.SKIPPED
                    carries_failure.add(dep.id)
            delta.writes.append((dep.id, str(new)))
            if new == TaskState.READY:
                delta.ready += 1
                delta.events.append((now, run_id, dep.id, "ready", None))
            else:
                work.append((dep, new))


def _why(row: TaskRunRow, state: TaskState) -> str | None:
    """What a task run ended by the graph shows beside its state, where the state alone does
    not say it: a foreach whose items failed."""
    if row.kind == TaskRunKind.FOREACH and state == TaskState.FAILED and row.failed_children:
        return f"items: {row.failed_children} failed"
    return None


def close_step(ctx: Context, tx: Tx, run_id: int, run: RunRow | None, now: float,
               delta: Delta, result: StepResult | None) -> RunRow:
    """Write the collected states, apply on_failure, and end the run if nothing is left.
    `run`: the run's row as this transaction last saw it, or None (read here if a policy
    needs it)."""
    ops.set_states(tx, delta.writes, now)
    ops.add_events(tx, delta.events)
    if delta.policy_failures:
        if run is None:
            run = ops.run_row(tx, run_id, lock=True)
            assert run is not None
        if run.halt is None:
            _apply_policy(tx, run, delta.policy_failures)
    run = ops.bump_run(tx, run_id, unfinished=delta.unfinished, running=delta.running,
                       ready=delta.ready, failed=delta.failed)
    if result is not None:
        result.ends.extend(delta.ends)
    if run.state in TERMINAL_RUN_STATES:
        return run
    if run.halt == Halt.CANCEL:
        run = finalize(ctx, tx, run, now, cancel_running=True, result=result)
    elif run.unfinished == 0:
        final = (RunState.CANCELLED if run.halt in USER_HALTS
                 else RunState.FAILED if run.failed else RunState.SUCCEEDED)
        ops.set_run_state(tx, run.id, final, now=now, finished=True)
        run.state = str(final)
    elif run.halt is not None and run.running == 0:
        stage = run.halt_stage if run.halt == Halt.FINISH_STAGE else None
        if run.halt != Halt.FINISH_STAGE or ops.count_claimable(tx, run.id, stage) == 0:
            run = finalize(ctx, tx, run, now, cancel_running=False, result=result)
    if run.state in TERMINAL_RUN_STATES:
        tx.wake = True
        if result is not None:
            result.finished_runs.append((run.id, run.state))
            result.ends.append(RunEnd(run.id, run.state))
        run_ended(ctx, tx, run, now, result)
    return run


def _apply_policy(tx: Tx, run: RunRow, failures: Sequence[TaskRunRow]) -> None:
    policy = run.on_failure
    if policy == OnFailure.CONTINUE:
        return
    if policy == OnFailure.FINISH_STAGE:
        stage = min(f.stage or 0 for f in failures)
        ops.set_halt(tx, run.id, Halt.FINISH_STAGE, stage)
        run.halt, run.halt_stage = Halt.FINISH_STAGE, stage
        return
    halt = Halt.CANCEL if policy == OnFailure.CANCEL else Halt.STOP
    ops.set_halt(tx, run.id, halt, None)
    run.halt = halt
    if halt == Halt.STOP:
        run_ops.mark_stopping(tx, run.id)


def finalize(ctx: Context, tx: Tx, run: RunRow, now: float, *, cancel_running: bool,
             result: StepResult | None = None) -> RunRow:
    """End a halted run: unstarted task runs are skipped; running ones cancelled if asked.
    A cancelled job task cancels the child run it started (whose run-end effects run here);
    the caller runs this run's own (`run_ended`). What it ends goes to `result.ends`."""
    user = run.halt in USER_HALTS
    writes: list[tuple[int, str]] = []
    # What the progress display is told, in the order a reader expects: items a halt ends
    # unnamed (there may be a million) only counted, then the named items before their
    # foreach, then the rest; (below) a child run's tasks and end before its job task.
    unnamed: Counter[str] = Counter()
    item_ends: list[TaskEnd] = []
    task_ends: list[TaskEnd] = []
    running = ready = 0
    cancelled: list[int] = []
    child_runs: list[int] = []
    for t in ops.unfinished_of_run(tx, run.id):
        if t.state == TaskState.RUNNING and t.kind == TaskRunKind.FOREACH and t.pending_children:
            # An expanded foreach parent: not on an agent, not in the running counter.
            state = "cancelled" if user else "failed"
        elif t.state == TaskState.RUNNING:
            if not cancel_running:
                continue
            running += 1
            cancelled.append(t.id)
            if t.child_run_id is not None:
                child_runs.append(t.child_run_id)
            # Reported now, though its agent reports the killed attempt later (fenced off).
            state = "cancelled"
        elif t.state == TaskState.RETRYING or t.retry_due:
            # A task waiting for a retry does not retry: it failed (docs/job-file.md).
            ready += t.state == TaskState.READY
            state = "cancelled" if user else "failed"
        else:
            ready += t.state == TaskState.READY
            state = "skipped"
        writes.append((t.id, state))
        if t.kind == TaskRunKind.BARRIER:
            continue  # a stage's barrier: no task of the user's
        if t.task is None:  # an item neither running nor waiting for a retry
            unnamed[state] += 1
        elif t.item_index is not None:
            item_ends.append(TaskEnd(run.id, t.id, f"{t.task}[{t.item_index}]", state))
        else:
            task_ends.append(TaskEnd(run.id, t.id, t.task, state))
    ops.set_states(tx, writes, now)
    run_ops.cancel_running(tx, cancelled, now)
    ops.add_events(tx, [(now, run.id, i, s, None) for i, s in writes])
    run = ops.bump_run(tx, run.id, unfinished=-len(writes), running=-running, ready=-ready)
    final = RunState.CANCELLED if user else RunState.FAILED
    ops.set_run_state(tx, run.id, final, now=now, finished=True)
    run.state = str(final)
    tx.wake = True
    for child_id in child_runs:
        child = ops.run_row(tx, child_id, lock=True)
        if child is not None and child.state not in TERMINAL_RUN_STATES:
            ops.set_halt(tx, child_id, Halt.USER_CANCEL, None)
            child.halt = Halt.USER_CANCEL
            child = finalize(ctx, tx, child, now, cancel_running=True, result=result)
            # The child's own end has its effects too (none acts on a sub-job run today:
            # its job task is cancelled already, and triggers watch top-level runs only).
            run_ended(ctx, tx, child, now, None)
            if result is not None:
                result.finished_runs.append((child.id, child.state))
                result.ends.append(RunEnd(child.id, child.state))
    if result is not None:
        result.ends.extend(UnnamedEnds(run.id, s, n) for s, n in sorted(unnamed.items()))
        result.ends.extend(item_ends)
        result.ends.extend(task_ends)
    return run


def run_ended(ctx: Context, tx: Tx, run: RunRow, now: float, result: StepResult | None
              ) -> None:
    """What follows a run's end inside its transaction, in the order of
    `Context.run_end_effects` (engine/facade.py: a sub-job's parent task first, then queued
    runs and cross-job triggers)."""
    for effect in ctx.run_end_effects:
        effect(ctx, tx, run, now, result)
