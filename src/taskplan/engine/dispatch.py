"""The hot path: one agent step records finished attempts and claims free slots; finishing
propagates states through the graph, applies on_failure, and ends runs."""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Collection, Iterable, Sequence
from itertools import groupby

from taskplan import triggers
from taskplan.engine.definitions import Definitions
from taskplan.engine.records import Claim, Outcome, StepResult, _Delta
from taskplan.engine.rules import (
    RunShare,
    fair_shares,
    resolve_trigger,
    retry_delay,
)
from taskplan.model import (
    FAILED_LIKE,
    TERMINAL_RUN_STATES,
    OnFailure,
    RunState,
    TaskState,
)
from taskplan.redact import mask_url
from taskplan.store import notify_ops, ops
from taskplan.store.db import Row, Tx
from taskplan.store.ops import RunRow, TaskRunRow, dumps, loads

log = logging.getLogger(__name__)

USER_HALTS = ("user_stop", "user_cancel")

STEP_CALL = ("SELECT * FROM taskplan_step(:agent, :now, :free, :root, :wake,"
             " CAST(:done AS jsonb))")


class Dispatch(Definitions):
    # -- the agent's step: finish what ended, claim what is free ---------------------------
    def step(self, agent_id: int, finished: Sequence[tuple[Claim, Outcome]], free: int,
             root_run_id: int | None = None) -> StepResult:
        """One transaction: record finished attempts, then claim up to `free` task runs."""
        if self.store.backend == "postgresql":
            fast = self._step_on_server(agent_id, finished, free, root_run_id)
            if fast is not None:
                return fast
        result = StepResult()
        with self.store.tx() as tx:
            now = self.clock()
            # Lock order on PostgreSQL: run rows first, by id, then their task runs (see
            # ops.lock_runs). Finishing in run order keeps two agents from deadlocking.
            finished = sorted(finished, key=lambda f: (f[0].run_id, f[0].task_run_id))
            if len({c.run_id for c, _ in finished}) > 1:  # one run: its first read locks it
                ops.lock_runs(tx, [c.run_id for c, _ in finished])
            for _run_id, group in groupby(finished, key=lambda f: f[0].run_id):
                self._finish_run(tx, list(group), now, result)
            if free > 0:
                result.claims = self._claim(tx, agent_id, free, root_run_id, now)
            if finished:
                tx.wake = True
            result.finished_runs.extend(tx.ended_runs)
        return result

    def _step_on_server(self, agent_id: int, finished: Sequence[tuple[Claim, Outcome]],
                        free: int, root_run_id: int | None) -> StepResult | None:
        """PostgreSQL: the whole step as one call of `taskplan_step` (migration 0003).

        Only for steps whose finishes are all plain successes; the function itself hands
        back (`fallback`, having written nothing) whatever needs a policy, a halt or a run's
        end. None means: take the general path.
        """
        plain = [(c, o) for c, o in finished if not o.expanded]
        if any(o.state != TaskState.SUCCEEDED or o.retry_now for _, o in plain):
            return None
        if len({c.task_run_id for c, _ in plain}) != len(plain):
            return None
        now = self.clock()
        done = json.dumps([
            {"i": c.task_run_id, "r": c.run_id, "a": c.attempt,
             "t": now if o.ended_at is None else min(o.ended_at, now), "x": o.exit_code,
             "res": None if o.result is None else dumps(o.result), "e": o.error}
            for c, o in plain
        ])
        rows = self.store.call(STEP_CALL, {
            "agent": agent_id, "now": now, "free": free, "root": root_run_id,
            "wake": bool(finished), "done": done,
        }, wake=bool(finished))
        if rows is None or (rows and rows[0][0] == "fallback"):
            return None
        result = StepResult()
        for row in rows:
            if row[0] == "stale":
                result.stale.append(int(row[1]))
            else:
                result.claims.append(Claim(
                    task_run_id=int(row[1]), run_id=int(row[2]), version_id=int(row[3]),
                    task=str(row[4]), kind=str(row[5]), item=loads(row[6]),
                    attempt=int(row[7]), max_attempts=int(row[8]), stage=row[9],
                    pool=row[10], parent_id=row[11],
                ))
        return result

    def _claim(self, tx: Tx, agent_id: int, free: int, root_run_id: int | None, now: float
               ) -> list[Claim]:
        runs = ops.claimable_runs(tx, root_run_id, agent_id)
        if not runs:
            return []
        meta = {int(r[0]): r for r in runs}
        mine = self._label_sets_of(tx, agent_id, max(int(r[8]) for r in runs))
        taken: dict[int, int] = {}
        dry: set[int] = set()  # runs that gave fewer than asked: nothing more for us there

        def shares_of(left: int, among: Collection[int] | None = None) -> dict[int, int]:
            return fair_shares([
                RunShare(i, int(r[1]), int(r[2]) + taken.get(i, 0),
                         int(r[3]) - taken.get(i, 0), r[4])
                for i, r in meta.items() if i not in dry and (among is None or i in among)
            ], left)

        claims: list[Claim] = []
        pool_room: dict[str, int] | None = None
        left = free
        # Rounds: a run whose ready task runs need labels this agent lacks (or whose pool is
        # full) gives fewer than its share; the next round offers the rest to the other runs.
        while left > 0:
            shares = shares_of(left)
            if tx.pg:
                new = set(shares) - tx.locked_runs
                if new:
                    ops.lock_runs(tx, new)
                    # The shares came from counters read before the locks: read them again
                    # now that no other claimer of these runs can commit, so max_parallel holds.
                    fresh = {int(r[0]): r for r in ops.claimable_runs(tx, root_run_id, agent_id)
                             if int(r[0]) in new}
                    for run_id in new:
                        if run_id in fresh:
                            meta[run_id] = fresh[run_id]
                        else:
                            dry.add(run_id)
                    shares = shares_of(left, tx.locked_runs)
            if not shares:
                break
            for run_id, n in sorted(shares.items()):
                got, pool_room = self._claim_run(tx, meta[run_id], n, agent_id, now, mine,
                                                 pool_room)
                claims.extend(got)
                taken[run_id] = taken.get(run_id, 0) + len(got)
                left -= len(got)
                if len(got) < n:
                    dry.add(run_id)
        if claims:
            ops.insert_attempts(tx, [(c.task_run_id, c.run_id, c.attempt, agent_id, now)
                                     for c in claims])
            ops.add_events(tx, [(now, c.run_id, c.task_run_id, "running", None)
                                for c in claims])
        return claims

    def _claim_run(self, tx: Tx, r: Row, n: int, agent_id: int, now: float,
                   mine: frozenset[int], pool_room: dict[str, int] | None
                   ) -> tuple[list[Claim], dict[str, int] | None]:
        """Claim up to n ready task runs of one run (r: its claimable_runs row); also the
        pools' room left, once a pooled candidate made the claim count it."""
        run_id = int(r[0])
        max_stage = int(r[6]) if r[5] == "finish_stage" and r[6] is not None else None
        cands = ops.claim_candidates(tx, run_id, n, max_stage, mine if int(r[8]) else None)
        ids = [int(c[0]) for c in cands if c[1] is None]
        pooled = [(int(c[0]), str(c[1])) for c in cands if c[1] is not None]
        if pooled:
            if pool_room is None:
                sizes = ops.pool_sizes(tx)
                used = ops.pool_usage(tx, sizes)
                pool_room = {p: sizes[p] - used.get(p, 0) for p in sizes}
            for tr_id, pool in pooled:
                room = pool_room.get(pool)
                if room is None or room > 0:  # an undeclared pool is unlimited
                    ids.append(tr_id)
                    if room is not None:
                        pool_room[pool] = room - 1
        if not ids:
            return [], pool_room
        rows = ops.mark_running(tx, ids, agent_id, now)
        version_id = int(r[7])
        ops.bump_run(tx, run_id, running=len(rows), ready=-len(rows))
        return [Claim(
            task_run_id=int(row[0]), run_id=int(row[1]), version_id=version_id,
            task=str(row[2]), kind=str(row[3]), item=loads(row[4]), attempt=int(row[5]),
            max_attempts=int(row[6]), stage=row[7], pool=row[8], parent_id=row[9],
        ) for row in rows], pool_room

    def _label_sets_of(self, tx: Tx, agent_id: int, upto: int) -> frozenset[int]:
        """The label sets (ids) this agent has every label of, among those up to `upto`.

        Sets get ids in commit order (ops.label_set_id), so a run whose task runs need sets
        up to `upto` is fully known once every set up to it has been read.
        """
        if upto == 0:
            return frozenset()
        labels = self._agent_labels.get(agent_id)
        if labels is None:
            labels = frozenset(x for x in ops.agent_labels(tx, agent_id).split(",") if x)
            self._agent_labels[agent_id] = labels
        if upto > self._label_sets_upto:
            for set_id, text in ops.label_sets_after(tx, self._label_sets_upto):
                self._label_sets[set_id] = frozenset(text.split(","))
                self._label_sets_upto = max(self._label_sets_upto, set_id)
        return frozenset(i for i, need in self._label_sets.items() if need <= labels)

    def _finish_run(self, tx: Tx, finished: Sequence[tuple[Claim, Outcome]], now: float,
                    result: StepResult) -> None:
        """The finishes of one run in one step, in order.

        Successes of a run with no halt are recorded together (`_finish_batch`): one read of
        the run row, one fenced UPDATE of their task runs, one counter bump. That is the same
        as finishing them one by one: a success applies no on_failure policy and, with no
        halt, a close before the last one ends nothing (each later one is still running,
        hence unfinished). Anything else (a failure, a cancel, a halted run) first closes
        what was batched, then takes the one-by-one path, which reads the run afresh.
        """
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
                self._finish_batch(tx, run, batch, now, result)
                batch, ids = [], set()
            self._finish(tx, claim, outcome, now, result)
            run = None  # it may have changed: read it again for the next batch
        if batch:
            assert run is not None
            self._finish_batch(tx, run, batch, now, result)

    def _finish_batch(self, tx: Tx, run: RunRow, batch: Sequence[tuple[Claim, Outcome]],
                      now: float, result: StepResult) -> None:
        """Successful attempts of one run (distinct task runs, the run not halted)."""
        if len(batch) == 1:  # the plain statements are cheaper for one (a chain's hop)
            self._finish(tx, batch[0][0], batch[0][1], now, result, run=run)
            return
        ends = [now if o.ended_at is None else min(o.ended_at, now) for _, o in batch]
        rows = ops.end_running_many(tx, [
            (c.task_run_id, c.attempt, str(o.state), ended, o.exit_code,
             None if o.result is None else dumps(o.result), o.error)
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
        delta = _Delta()
        for claim, outcome in batch:
            got = rows.get(claim.task_run_id)
            if got is None:
                continue
            row, has_dependants = got
            delta.running -= 1
            self._settle(tx, run, [(row, outcome.state)], now, delta, detail=outcome.error,
                         leaves=() if has_dependants else (row.id,))
        self._close_step(tx, run, now, delta, result)

    def _finish(self, tx: Tx, claim: Claim, outcome: Outcome, now: float,
                result: StepResult, run: RunRow | None = None) -> None:
        """Record one ended attempt. `run`: the run's row as this transaction last saw it,
        when nothing changed it since (else it is read here)."""
        if outcome.expanded:
            return
        if run is None:
            run = ops.run_row(tx, claim.run_id, lock=True)
        assert run is not None
        retry = (outcome.state == TaskState.FAILED and claim.attempt < claim.max_attempts
                 and run.halt is None)
        state = TaskState.RUNNING if retry else outcome.state
        ended = now if outcome.ended_at is None else min(outcome.ended_at, now)
        row = ops.end_running(
            tx, claim.task_run_id, claim.attempt, str(state), ended, outcome.exit_code,
            None if outcome.result is None else dumps(outcome.result), outcome.error,
        )
        attempt_state = "lost" if outcome.retry_now else str(outcome.state)
        if row is None:
            result.stale.append(claim.task_run_id)  # fenced off: a newer owner or a cancel
            return
        ops.finish_attempt(tx, claim.task_run_id, claim.attempt, attempt_state, ended,
                           outcome.exit_code, outcome.error)
        if retry:
            delay = 0.0 if outcome.retry_now else retry_delay(
                self.task_spec(claim.version_id, claim.task), claim.attempt)
            due = now + delay
            log.info("retry: run %s task %s attempt %s/%s failed, next in %.1fs: %s",
                     claim.run_id, claim.task, claim.attempt, claim.max_attempts, delay,
                     mask_url(outcome.error or "failed"),
                     extra={"event": "retry", "run_id": claim.run_id, "task": claim.task,
                            "task_run_id": claim.task_run_id, "attempt": claim.attempt,
                            "delay": delay})
            if delay <= 0:
                ops.set_states(tx, [(claim.task_run_id, "ready")], now)
                run = ops.bump_run(tx, claim.run_id, running=-1, ready=1)
                ops.add_events(tx, [(now, claim.run_id, claim.task_run_id, "ready",
                                     outcome.error)])
                if not outcome.retry_now:  # retried at once (no delay): still a retry
                    notify_ops.record(tx, [(now, claim.run_id, claim.task_run_id, "retrying",
                                            outcome.error)])
            else:
                ops.set_retrying(tx, claim.task_run_id, due, outcome.error, outcome.exit_code)
                ops.bump_run(tx, claim.run_id, running=-1)
                ops.add_events(tx, [(now, claim.run_id, claim.task_run_id, "retrying",
                                     outcome.error)])
                if result.next_due is None or due < result.next_due:
                    result.next_due = due
            return
        delta = _Delta(running=-1)
        self._settle(tx, run, [(TaskRunRow(*row), outcome.state)], now, delta,
                     detail=outcome.error)
        self._close_step(tx, run, now, delta, result)

    def _settle(self, tx: Tx, run: RunRow, first: Iterable[tuple[TaskRunRow, TaskState]],
                now: float, delta: _Delta, detail: str | None = None,
                leaves: Collection[int] = ()) -> None:
        """Propagate terminal states through the graph inside the current transaction.

        `leaves`: task runs known to have no dependants (no task_edges from them), whose
        decrement would change nothing.
        """
        work: deque[tuple[TaskRunRow, TaskState]] = deque(first)
        first_id = work[0][0].id if work else None
        # Outside `continue`, a task that never starts because an upstream failed ends
        # `skipped` (docs/job-file.md), yet still counts as failed for its own dependants' rules.
        skip_failed = run.on_failure != OnFailure.CONTINUE
        carries_failure: set[int] = set()
        while work:
            row, state = work.popleft()
            delta.unfinished -= 1
            delta.events.append((now, run.id, row.id, str(state),
                                 detail if row.id == first_id else None))
            if state == TaskState.FAILED:
                delta.failed += 1
                if row.kind == "task" or (row.kind == "foreach" and not row.failed_children):
                    delta.policy_failures.append(row)
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
                if (skip_failed and new == TaskState.UPSTREAM_FAILED
                        and dep.kind != "barrier"):
                    new = TaskState.SKIPPED
                    carries_failure.add(dep.id)
                delta.writes.append((dep.id, str(new)))
                if new == TaskState.READY:
                    delta.ready += 1
                    delta.events.append((now, run.id, dep.id, "ready", None))
                else:
                    work.append((dep, new))

    def _close_step(self, tx: Tx, run: RunRow, now: float, delta: _Delta,
                    result: StepResult | None) -> RunRow:
        """Write the collected states, apply on_failure, and end the run if nothing is left."""
        ops.set_states(tx, delta.writes, now)
        ops.add_events(tx, delta.events)
        if delta.policy_failures and run.halt is None:
            self._apply_policy(tx, run, delta.policy_failures)
        run = ops.bump_run(tx, run.id, unfinished=delta.unfinished, running=delta.running,
                           ready=delta.ready, failed=delta.failed)
        if run.state in TERMINAL_RUN_STATES:
            return run
        if run.halt == "cancel":
            run = self._finalize(tx, run, now, cancel_running=True)
        elif run.unfinished == 0:
            final = (RunState.CANCELLED if run.halt in USER_HALTS
                     else RunState.FAILED if run.failed else RunState.SUCCEEDED)
            ops.set_run_state(tx, run.id, final, now=now, finished=True)
            run.state = str(final)
        elif run.halt is not None and run.running == 0:
            stage = run.halt_stage if run.halt == "finish_stage" else None
            if run.halt != "finish_stage" or ops.count_claimable(tx, run.id, stage) == 0:
                run = self._finalize(tx, run, now, cancel_running=False)
        if run.state in TERMINAL_RUN_STATES:
            tx.wake = True
            if result is not None:
                result.finished_runs.append((run.id, run.state))
            self._on_run_end(tx, run, now)
        return run

    def _apply_policy(self, tx: Tx, run: RunRow, failures: Sequence[TaskRunRow]) -> None:
        policy = run.on_failure
        if policy == OnFailure.CONTINUE:
            return
        if policy == OnFailure.FINISH_STAGE:
            stage = min(f.stage or 0 for f in failures)
            ops.set_halt(tx, run.id, "finish_stage", stage)
            run.halt, run.halt_stage = "finish_stage", stage
            return
        halt = "cancel" if policy == OnFailure.CANCEL else "stop"
        ops.set_halt(tx, run.id, halt, None)
        run.halt = halt
        if halt == "stop":
            tx.run("UPDATE runs SET state = 'stopping' WHERE id = :r", {"r": run.id})

    def _finalize(self, tx: Tx, run: RunRow, now: float, *, cancel_running: bool) -> RunRow:
        """End a halted run: unstarted task runs are skipped; running ones cancelled if asked."""
        user = run.halt in USER_HALTS
        rows = ops.unfinished_of_run(tx, run.id)
        writes: list[tuple[int, str]] = []
        running = ready = 0
        cancelled: list[int] = []
        child_runs: list[int] = []
        for tr_id, state, kind, children, child_run in rows:
            if state == "running" and kind == "foreach" and children:
                # An expanded foreach parent: not on an agent, not in the running counter.
                writes.append((int(tr_id), "cancelled" if user else "failed"))
            elif state == "running":
                if not cancel_running:
                    continue
                running += 1
                cancelled.append(int(tr_id))
                if child_run is not None:
                    child_runs.append(int(child_run))
                writes.append((int(tr_id), "cancelled"))
            elif state == "retrying":
                writes.append((int(tr_id), "cancelled" if user else "failed"))
            else:
                ready += state == "ready"
                writes.append((int(tr_id), "skipped"))
        ops.set_states(tx, writes, now)
        if cancelled:
            tx.run(
                "UPDATE task_runs SET agent_id = NULL WHERE id IN ("
                + ", ".join(str(i) for i in cancelled) + ")"
            )
            tx.run(
                "UPDATE attempts SET state = 'cancelled', finished_at = :t WHERE state ="
                " 'running' AND task_run_id IN (" + ", ".join(str(i) for i in cancelled) + ")",
                {"t": now},
            )
        ops.add_events(tx, [(now, run.id, i, s, None) for i, s in writes])
        run = ops.bump_run(tx, run.id, unfinished=-len(writes), running=-running, ready=-ready)
        final = RunState.CANCELLED if user else RunState.FAILED
        ops.set_run_state(tx, run.id, final, now=now, finished=True)
        run.state = str(final)
        tx.wake = True
        for child_id in child_runs:  # a cancelled job task cancels the run it started
            child = ops.run_row(tx, child_id, lock=True)
            if child is not None and child.state not in TERMINAL_RUN_STATES:
                ops.set_halt(tx, child_id, "user_cancel", None)
                child.halt = "user_cancel"
                self._finalize(tx, child, now, cancel_running=True)
        return run


    def _on_run_end(self, tx: Tx, run: RunRow, now: float) -> None:
        """What follows a run's end inside its transaction: cross-job triggers."""
        triggers.after_run_end(self, tx, run, now)
