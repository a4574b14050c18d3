"""Runs inside runs: foreach items under their parent, and `job` tasks starting child runs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from taskplan.engine.dispatch import Dispatch
from taskplan.engine.records import Claim, Outcome, StepResult
from taskplan.errors import UsageError
from taskplan.model import (
    TERMINAL_RUN_STATES,
    RunState,
    TaskState,
)
from taskplan.store import ops
from taskplan.store.db import Tx
from taskplan.store.ops import RunRow, dumps, loads


class SubRuns(Dispatch):
    def _on_run_end(self, tx: Tx, run: RunRow, now: float) -> None:
        if run.parent_task_run_id is not None:
            self._child_run_ended(tx, run, now)
        super()._on_run_end(tx, run, now)

    # -- foreach --------------------------------------------------------------------------
    def expand_foreach(self, claim: Claim, chunks: Iterable[Sequence[Any]]) -> int | None:
        """Insert one ready task run per item under a claimed foreach parent, in ONE transaction.

        `chunks` is consumed lazily and written chunk by chunk (executemany), so a streamed
        source of 100,000 rows keeps memory flat. The parent becomes `running` with
        `pending_children = n`; `_settle` ends it when its last item ends. Returns n, or None
        when the claim was fenced off (cancelled, or the run is halting); nothing is written
        then. With zero items nothing is written either: the caller finishes the parent.
        """
        with self.store.tx() as tx:
            run = ops.run_row(tx, claim.run_id, lock=True)
            if run is None or run.state in TERMINAL_RUN_STATES or (
                    run.halt is not None and run.halt != "finish_stage"):
                return None
            done = ops.foreach_items_of_attempt(tx, claim.task_run_id, claim.attempt)
            if done:
                return done  # a retry after a commit whose reply was lost: already expanded
            if not ops.hold_foreach_parent(tx, claim.task_run_id, claim.attempt):
                return None
            spec = self.task_spec(claim.version_id, claim.task)
            label_set = self._label_set(tx, spec.agent_labels)
            now = self.clock()
            n = 0
            for chunk in chunks:
                rows = [{
                    "run": claim.run_id, "task": claim.task, "parent": claim.task_run_id,
                    "idx": n + i, "item": dumps(item), "kind": "task", "stage": claim.stage,
                    "state": "ready", "rule": str(spec.trigger), "pend": 0,
                    "prio": spec.priority, "rank": -spec.priority, "pool": spec.pool,
                    "maxa": spec.retries + 1, "ready_at": now, "ls": label_set,
                } for i, item in enumerate(chunk)]
                ops.insert_task_runs(tx, rows)
                n += len(rows)
            if n == 0:
                return 0
            ops.set_foreach_expanded(tx, claim.task_run_id, n)
            ops.finish_attempt(tx, claim.task_run_id, claim.attempt, "succeeded", now, None,
                               None)
            # The parent leaves the running counter: its items are what runs now.
            ops.bump_run(tx, claim.run_id, unfinished=n, ready=n, running=-1)
            ops.add_events(tx, [(now, claim.run_id, claim.task_run_id, "running",
                                 f"expanded into {n} items")])
            tx.wake = True
            return n

    # -- job tasks ------------------------------------------------------------------------
    def start_child_run(self, claim: Claim, job_name: str, params: dict[str, Any]
                        ) -> int | None:
        """Start a run of `job_name` (its current version) for a claimed `job` task.

        The child shares the parent's root run, so the agent of an in-process `taskplan run`
        executes it too. The job task stays `running`, off its agent's slot, until the child
        ends (`_child_run_ended`). Returns the child's id, or None when the claim was fenced
        off. A job that would start itself through its ancestors is refused.
        """
        version_id = self.current_version(job_name)
        spec = self.job_spec(version_id)
        with self.store.tx() as tx:
            started = ops.child_of_attempt(tx, claim.task_run_id, claim.attempt)
            if started is not None:
                return started  # a retry after a commit whose reply was lost
            if tx.run("UPDATE task_runs SET agent_id = NULL WHERE id = :i AND state = 'running'"
                      " AND attempts = :a", {"i": claim.task_run_id, "a": claim.attempt}) != 1:
                return None
            chain = self._job_ancestry(tx, claim.run_id)
            if job_name in chain:
                raise UsageError("job cycle: " + " -> ".join([*reversed(chain), job_name]))
            run = ops.run_row(tx, claim.run_id)
            assert run is not None
            # A foreground run's children stay with its process, like the run itself.
            child = self._create_run(tx, spec, version_id, {**spec.params, **params}, "job",
                                     str(claim.task_run_id), claim.task_run_id,
                                     run.root_run_id, pin_agent_id=ops.run_pin(tx, run.id))
            tx.run("UPDATE task_runs SET child_run_id = :c WHERE id = :i",
                   {"c": child, "i": claim.task_run_id})
            ops.add_events(tx, [(self.clock(), claim.run_id, claim.task_run_id, "running",
                                 f"started run {child} of {job_name}")])
            return child

    @staticmethod
    def _job_ancestry(tx: Tx, run_id: int | None) -> list[str]:
        """Job names from this run up through the runs that started it."""
        names: list[str] = []
        while run_id is not None and len(names) < 1000:
            row = tx.one("SELECT r.parent_task_run_id, j.name FROM runs r JOIN jobs j"
                         " ON j.id = r.job_id WHERE r.id = :r", {"r": run_id})
            if row is None:
                break
            names.append(str(row[1]))
            run_id = None if row[0] is None else tx.scalar(
                "SELECT run_id FROM task_runs WHERE id = :i", {"i": row[0]})
        return names

    def _child_run_ended(self, tx: Tx, run: RunRow, now: float) -> None:
        """A sub-job run ended: its job task succeeds or fails with it (retries apply)."""
        row = tx.one(
            "SELECT t.id, t.run_id, r.version_id, t.task, t.kind, t.item, t.attempts,"
            " t.max_attempts, t.stage, t.pool, t.parent_id FROM task_runs t JOIN runs r"
            " ON r.id = t.run_id WHERE t.id = :i AND t.state = 'running' AND t.child_run_id = :c",
            {"i": run.parent_task_run_id, "c": run.id})
        if row is None:
            return
        claim = Claim(int(row[0]), int(row[1]), int(row[2]), str(row[3]), str(row[4]),
                      loads(row[5]), int(row[6]), int(row[7]), row[8], row[9], row[10])
        result = {"run_id": run.id, "state": run.state}
        outcome = (Outcome(TaskState.SUCCEEDED, result=result) if run.state == RunState.SUCCEEDED
                   else Outcome(TaskState.FAILED, result=result,
                                error=f"run {run.id} ended {run.state}"))
        ended = StepResult()
        self._finish(tx, claim, outcome, now, ended)
        tx.ended_runs.extend(ended.finished_runs)

