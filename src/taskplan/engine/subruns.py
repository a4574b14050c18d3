"""Runs inside runs: foreach items under their parent, and `job` tasks starting child runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from taskplan.engine import definitions, runs, transitions
from taskplan.engine.context import Context
from taskplan.engine.records import AttemptEnd, Claim, Outcome, StepResult
from taskplan.errors import UsageError
from taskplan.model import TERMINAL_RUN_STATES, Halt, RunState, TaskRunKind, TaskState
from taskplan.rules import declared_params
from taskplan.store import claims as claim_ops
from taskplan.store import ops, run_ops
from taskplan.store.db import Tx
from taskplan.store.ops import RunRow, dumps_value
from taskplan.store.run_ops import Reset


def expand_foreach(ctx: Context, claim: Claim, chunks: Iterable[Sequence[Any]]) -> int | None:
    """Insert one ready task run per item under a claimed foreach parent, in ONE transaction.

    `chunks` is consumed lazily and written chunk by chunk (executemany), so a streamed
    source of 100,000 rows keeps memory flat. The parent becomes `running` with
    `pending_children = n`; `transitions.settle` ends it when its last item ends. Returns n,
    or None when the claim was fenced off (cancelled, or the run is halting); nothing is
    written then. With zero items nothing is written either: the caller finishes the parent.
    """
    with ctx.store.tx() as tx:
        run = ops.run_row(tx, claim.run_id, lock=True)
        if run is None or run.state in TERMINAL_RUN_STATES or (
                run.halt is not None and run.halt != Halt.FINISH_STAGE):
            return None
        done = ops.foreach_items_of_attempt(tx, claim.task_run_id, claim.attempt)
        if done:
            return done  # a retry after a commit whose reply was lost: already expanded
        if not ops.hold_foreach_parent(tx, claim.task_run_id, claim.attempt):
            return None
        spec = definitions.task_spec(ctx, claim.version_id, claim.task)
        total, rerun = run_ops.items_to_rerun(tx, claim.task_run_id)
        if total:
            return _rerun_items(ctx, tx, claim, spec.retries + 1, total, rerun)
        label_set = runs.label_set(ctx, tx, spec.agent_labels)
        now = ctx.clock()
        n = 0
        for chunk in chunks:
            rows = [{
                "run": claim.run_id, "task": claim.task, "parent": claim.task_run_id,
                "idx": n + i, "item": dumps_value(item), "kind": str(TaskRunKind.TASK),
                "stage": claim.stage,
                "state": "ready", "rule": str(spec.trigger), "pend": 0,
                "prio": spec.priority, "rank": -spec.priority, "pool": spec.pool,
                "maxa": spec.retries + 1, "ready_at": now, "ls": label_set,
            } for i, item in enumerate(chunk)]
            ops.insert_task_runs(tx, rows)
            n += len(rows)
        if n == 0:
            return 0
        ops.set_foreach_expanded(tx, claim.task_run_id, n)
        ops.finish_attempt(tx, claim.task_run_id, claim.attempt, "succeeded", now, None, None)
        # The parent leaves the running counter: its items are what runs now.
        ops.bump_run(tx, claim.run_id, unfinished=n, ready=n, running=-1)
        ops.add_events(tx, [(now, claim.run_id, claim.task_run_id, "running",
                             f"expanded into {n} items")])
        tx.wake = True
        return n


def _rerun_items(ctx: Context, tx: Tx, claim: Claim, tries: int, total: int,
                 rerun: Sequence[int]) -> int:
    """A foreach that expanded before, held back by `taskplan retry` until its upstreams
    ran again (engine/commands.py): it keeps its items, whose number and values its source
    decided then, and the items that did not succeed run again, each with `tries` more
    attempts. Returns how many."""
    if not rerun:
        return 0
    now = ctx.clock()
    run_ops.reset_task_runs(tx, [Reset(i, "ready", 0, 0, 0, tries) for i in rerun], now)
    ops.set_foreach_expanded(tx, claim.task_run_id, len(rerun))
    ops.finish_attempt(tx, claim.task_run_id, claim.attempt, "succeeded", now, None, None)
    ops.bump_run(tx, claim.run_id, unfinished=len(rerun), ready=len(rerun), running=-1)
    ops.add_events(tx, [(now, claim.run_id, claim.task_run_id, "running",
                         f"reran {len(rerun)} of its {total} items")]
                   + [(now, claim.run_id, i, "ready", "retry") for i in rerun])
    tx.wake = True
    return len(rerun)


def start_child_run(ctx: Context, claim: Claim, job_name: str, params: dict[str, Any]
                    ) -> int | None:
    """Start a run of `job_name` (its current version) for a claimed `job` task.

    The child shares the parent's root run, so the agent of an in-process `taskplan run`
    executes it too. The job task stays `running`, off its agent's slot, until the child
    ends (`child_run_ended`). Returns the child's id, or None when the claim was fenced off.
    A job that would start itself through its ancestors is refused.
    """
    version_id = definitions.current_version(ctx, job_name)
    spec = definitions.job_spec(ctx, version_id)
    # As `--param` is checked: names the child declares, typed by its defaults (the parent's
    # templates render text: `n: "{{ params.n }}"` reaches a child whose default is 3 as 7).
    params = declared_params(spec, params)
    with ctx.store.tx() as tx:
        started = ops.child_of_attempt(tx, claim.task_run_id, claim.attempt)
        if started is not None:
            return started  # a retry after a commit whose reply was lost
        if not run_ops.release_job_task(tx, claim.task_run_id, claim.attempt):
            return None
        chain = run_ops.job_ancestry(tx, claim.run_id)
        if job_name in chain:
            raise UsageError("job cycle: " + " -> ".join([*reversed(chain), job_name]))
        run = ops.run_row(tx, claim.run_id)
        assert run is not None
        # A foreground run's children stay with its process, like the run itself.
        child = runs.create_run_in(ctx, tx, spec, version_id, {**spec.params, **params},
                                   "job", str(claim.task_run_id), claim.task_run_id,
                                   run.root_run_id, pin_agent_id=ops.run_pin(tx, run.id))
        run_ops.set_child_run(tx, claim.task_run_id, child)
        ops.add_events(tx, [(ctx.clock(), claim.run_id, claim.task_run_id, "running",
                             f"started run {child} of {job_name}")])
        return child


def child_run_ended(ctx: Context, tx: Tx, run: RunRow, now: float,
                    result: StepResult | None) -> None:
    """A run-end effect: a sub-job run ended, so its job task succeeds or fails with it
    (retries apply). The parent run may end in turn: the step that ended the child reports
    it too (`result`)."""
    if run.parent_task_run_id is None:
        return
    claim = claim_ops.running_job_task(tx, run.parent_task_run_id, run.id)
    if claim is None:
        return
    child = {"run_id": run.id, "state": run.state}
    if run.state == RunState.SUCCEEDED:
        outcome = Outcome(TaskState.SUCCEEDED, result=child)
    elif run.state == RunState.CANCELLED:
        # Someone stopped or cancelled the child run itself: the job task ends with it, as
        # a killed attempt does, and does not start another run of the child job.
        outcome = Outcome(TaskState.CANCELLED, result=child,
                          error=f"run {run.id} was cancelled")
    else:
        outcome = Outcome(TaskState.FAILED, result=child,
                          error=f"run {run.id} ended {run.state}")
    if result is not None:
        result.ends.append(AttemptEnd(claim, outcome))
    transitions.finish(ctx, tx, claim, outcome, now,
                       result if result is not None else StepResult())
