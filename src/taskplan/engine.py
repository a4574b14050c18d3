"""What happens on each transition: readying dependants, trigger rules, on_failure policies,
run completion, claims shared fairly across runs, stop/cancel/retry, and lease recovery.

Every public method is one short transaction on the store. Dispatch is incremental: finishing a
task run decrements a counter on each dependant and readies those that reach zero, so the cost
of a transition is O(its edges) whatever the size of the run.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from taskplan import dag, triggers
from taskplan.errors import NotFoundError, UsageError
from taskplan.model import (
    FAILED_LIKE,
    TERMINAL_RUN_STATES,
    JobSpec,
    OnFailure,
    RunState,
    TaskSpec,
    TaskState,
    TriggerRule,
)
from taskplan.store import ops
from taskplan.store.db import Store, Tx
from taskplan.store.ops import RunRow, TaskRunRow, dumps, loads

Clock = Callable[[], float]
USER_HALTS = ("user_stop", "user_cancel")


def resolve_trigger(kind: str, rule: str, failed_up: int) -> TaskState:
    """The state a task run takes once all its upstreams have finished."""
    if kind == "barrier":
        return TaskState.UPSTREAM_FAILED if failed_up else TaskState.SUCCEEDED
    if rule == TriggerRule.ALL_DONE:
        return TaskState.READY
    if rule == TriggerRule.ONE_FAILED:
        return TaskState.READY if failed_up else TaskState.SKIPPED
    return TaskState.UPSTREAM_FAILED if failed_up else TaskState.READY


def retry_delay(spec: TaskSpec, failed_attempt: int) -> float:
    """Delay before the attempt after `failed_attempt` (1-based): delay * backoff^(n-1)."""
    return float(spec.retry_delay * (spec.retry_backoff ** max(0, failed_attempt - 1)))


@dataclass(frozen=True)
class RunShare:
    run_id: int
    priority: int
    running: int
    ready: int
    max_parallel: int | None


def fair_shares(runs: Sequence[RunShare], slots: int) -> dict[int, int]:
    """Split free slots: higher job priority first, then the run with the fewest running tasks.

    A run with 10,000 ready tasks therefore cannot starve one with 10 that started later.
    """
    heap = [(-r.priority, r.running, r.run_id) for r in runs if r.ready > 0]
    heapq.heapify(heap)
    by_id = {r.run_id: r for r in runs}
    given: dict[int, int] = {}
    while heap and slots > 0:
        neg_prio, load, run_id = heapq.heappop(heap)
        share = by_id[run_id]
        n = given.get(run_id, 0)
        if n >= share.ready:
            continue
        if share.max_parallel is not None and share.running + n >= share.max_parallel:
            continue
        given[run_id] = n + 1
        slots -= 1
        heapq.heappush(heap, (neg_prio, load + 1, run_id))
    return given


@dataclass(frozen=True)
class Claim:
    """A task run handed to an agent; (task_run_id, attempt) is its fencing token."""

    task_run_id: int
    run_id: int
    version_id: int
    task: str
    kind: str
    item: Any
    attempt: int
    max_attempts: int
    stage: int | None
    pool: str | None
    parent_id: int | None


@dataclass(frozen=True)
class Outcome:
    state: TaskState  # SUCCEEDED or FAILED
    exit_code: int | None = None
    result: Any = None
    error: str | None = None
    retry_now: bool = False  # an agent was lost: retry at once, no delay
    # A foreach parent whose items `expand_foreach` inserted, or a job task whose child run
    # `start_child_run` started: already recorded, the step has nothing left to write.
    expanded: bool = False


@dataclass
class StepResult:
    claims: list[Claim] = field(default_factory=list)
    finished_runs: list[tuple[int, str]] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    next_due: float | None = None  # earliest retry this step scheduled


@dataclass
class _Delta:
    unfinished: int = 0
    running: int = 0
    ready: int = 0
    failed: int = 0
    events: list[tuple[float, int, int | None, str, str | None]] = field(default_factory=list)
    writes: list[tuple[int, str]] = field(default_factory=list)
    policy_failures: list[TaskRunRow] = field(default_factory=list)


class Engine:
    def __init__(self, store: Store, clock: Clock = time.time) -> None:
        self.store = store
        self.clock = clock
        self._specs: dict[int, JobSpec] = {}
        self._specs_lock = threading.Lock()
        self._tasks: dict[int, dict[str, TaskSpec]] = {}
        self._run_meta: dict[int, tuple[int, dict[str, Any]]] = {}

    # -- definitions ------------------------------------------------------------------------
    def apply(self, spec: JobSpec) -> tuple[int, int, bool]:
        """Store a job definition. Returns (version_id, version number, changed)."""
        from taskplan.spec import definition_hash  # the parser is heavy; load it on use

        digest = definition_hash(spec.definition)
        now = self.clock()
        with self.store.tx() as tx:
            self._check_job_calls(tx, spec)
            job = ops.job_by_name(tx, spec.name)
            job_id = int(job[0]) if job else ops.insert_job(tx, spec.name, now)
            if job and job[2] is not None:
                current = ops.version_row(tx, int(job[2]))
                if current and current[3] == digest:
                    for name, size in spec.pools.items():
                        ops.upsert_pool(tx, name, size)
                    return int(current[0]), int(current[2]), False
            vid, number = ops.insert_version(
                tx, job_id, dumps(spec.definition), digest, spec.source_path, spec.base_dir, now
            )
            for name, size in spec.pools.items():
                ops.upsert_pool(tx, name, size)
            tx.wake = True
        return vid, number, True

    def job_spec(self, version_id: int, tx: Tx | None = None) -> JobSpec:
        """The definition a run pinned. Versions never change, so they are cached forever.

        Inside a write transaction pass it as `tx`: the read then goes through it.
        """
        spec = self._specs.get(version_id)
        if spec is not None:
            return spec
        if tx is not None:
            row = ops.version_row(tx, version_id)
        else:
            with self.store.read() as rtx:
                row = ops.version_row(rtx, version_id)
        if row is None:
            raise NotFoundError(f"no job version {version_id}")
        from taskplan.spec import job_from_definition

        spec = job_from_definition(loads(row[4]), row[5], row[6])
        with self._specs_lock:
            self._specs[version_id] = spec
        return spec

    def task_spec(self, version_id: int, name: str) -> TaskSpec:
        """One task of a pinned definition, by name (KeyError if absent); O(1), cached."""
        tasks = self._tasks.get(version_id)
        if tasks is None:
            tasks = {t.name: t for t in self.job_spec(version_id).tasks}
            self._tasks[version_id] = tasks
        return tasks[name]

    def current_version(self, job_name: str) -> int:
        with self.store.read() as tx:
            job = ops.job_by_name(tx, job_name)
        if job is None or job[2] is None:
            raise NotFoundError(f"no job named {job_name!r} (apply it first)")
        return int(job[2])

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, version_id: int, params: dict[str, Any] | None = None, *,
                   trigger: str = "manual", trigger_ref: str | None = None,
                   parent_task_run_id: int | None = None, root_run_id: int | None = None,
                   tx: Tx | None = None, queued: bool = False) -> int:
        """A new run; with `queued` it stays `queued` (no claims) until something starts it."""
        spec = self.job_spec(version_id, tx)
        merged = {**spec.params, **(params or {})}
        if tx is not None:
            return self._create_run(tx, spec, version_id, merged, trigger, trigger_ref,
                                    parent_task_run_id, root_run_id, queued)
        with self.store.tx() as new_tx:
            return self._create_run(new_tx, spec, version_id, merged, trigger, trigger_ref,
                                    parent_task_run_id, root_run_id, queued)

    def _create_run(self, tx: Tx, spec: JobSpec, version_id: int, params: dict[str, Any],
                    trigger: str, trigger_ref: str | None, parent_task_run_id: int | None,
                    root_run_id: int | None, queued: bool = False) -> int:
        now = self.clock()
        job_id = tx.scalar("SELECT job_id FROM job_versions WHERE id = :v", {"v": version_id})
        run_id = ops.insert_run(
            tx, job_id=int(job_id), version_id=version_id, params=params, trigger=trigger,
            trigger_ref=trigger_ref, priority=spec.priority, max_parallel=spec.max_parallel,
            on_failure=str(spec.on_failure), parent_task_run_id=parent_task_run_id,
            root_run_id=root_run_id, now=now,
        )
        ups = plan_upstreams(spec)
        by_name = {t.name: t for t in spec.tasks}  # JobSpec.task() is a linear scan
        rows: list[dict[str, Any]] = []
        ready = 0
        for name, up in ups.items():
            is_barrier = name.startswith("@")
            task = None if is_barrier else by_name[name]
            state = TaskState.READY if not up else TaskState.PENDING
            ready += state == TaskState.READY
            rows.append({
                "run": run_id, "task": name, "parent": None, "idx": None, "item": None,
                "kind": "barrier" if is_barrier else ("foreach" if task and task.foreach
                                                       else "task"),
                "stage": int(name[len("@stage"):]) if is_barrier else (task.stage if task
                                                                        else None),
                "state": str(state),
                "rule": str(task.trigger) if task else str(TriggerRule.ALL_DONE),
                "pend": len(up),
                "prio": task.priority if task else 0,
                "rank": -(task.priority if task else 0),
                # A foreach parent takes no pool room: its items do.
                "pool": task.pool if task and not task.foreach else None,
                "maxa": (task.retries + 1) if task else 1,
                "ready_at": now if state == TaskState.READY else None,
            })
        ops.insert_task_runs(tx, rows)
        ids = ops.task_ids(tx, run_id)
        ops.insert_edges(tx, [(ids[u], ids[d]) for d, us in ups.items() for u in us])
        ops.bump_run(tx, run_id, unfinished=len(rows), ready=ready)
        if queued:
            ops.add_events(tx, [(now, run_id, None, str(RunState.QUEUED), None)])
        else:
            ops.set_run_state(tx, run_id, RunState.RUNNING, now=now, started=True)
        ops.add_events(tx, [(now, run_id, ids[r["task"]], "ready", None)
                            for r in rows if r["state"] == "ready"])
        tx.wake = True
        return run_id

    def run_state(self, run_id: int) -> str:
        with self.store.read() as tx:
            state = tx.scalar("SELECT state FROM runs WHERE id = :r", {"r": run_id})
        if state is None:
            raise NotFoundError(f"no run {run_id}")
        return str(state)

    def run_meta(self, run_id: int) -> tuple[int, dict[str, Any]]:
        """(version_id, params) of a run; immutable, so cached."""
        meta = self._run_meta.get(run_id)
        if meta is None:
            with self.store.read() as tx:
                row = tx.one("SELECT version_id, params FROM runs WHERE id = :r", {"r": run_id})
            if row is None:
                raise NotFoundError(f"no run {run_id}")
            meta = (int(row[0]), loads(row[1]))
            self._run_meta[run_id] = meta
        return meta

    # -- the agent's step: finish what ended, claim what is free ---------------------------
    def step(self, agent_id: int, finished: Sequence[tuple[Claim, Outcome]], free: int,
             root_run_id: int | None = None) -> StepResult:
        """One transaction: record finished attempts, then claim up to `free` task runs."""
        result = StepResult()
        with self.store.tx() as tx:
            now = self.clock()
            # Lock order on PostgreSQL: run rows first, by id, then their task runs (see
            # ops.lock_runs). Finishing in run order keeps two agents from deadlocking.
            finished = sorted(finished, key=lambda f: (f[0].run_id, f[0].task_run_id))
            if len({c.run_id for c, _ in finished}) > 1:  # one run: _finish locks it
                ops.lock_runs(tx, [c.run_id for c, _ in finished])
            for claim, outcome in finished:
                self._finish(tx, claim, outcome, now, result)
            if free > 0:
                result.claims = self._claim(tx, agent_id, free, root_run_id, now)
            if finished:
                tx.wake = True
        return result

    def _claim(self, tx: Tx, agent_id: int, free: int, root_run_id: int | None, now: float
               ) -> list[Claim]:
        runs = ops.claimable_runs(tx, root_run_id)
        if not runs:
            return []
        meta = {int(r[0]): r for r in runs}
        shares = fair_shares(
            [RunShare(int(r[0]), int(r[1]), int(r[2]), int(r[3]), r[4]) for r in runs], free
        )
        claims: list[Claim] = []
        pool_room: dict[str, int] | None = None
        ops.lock_runs(tx, shares)
        for run_id, n in sorted(shares.items()):
            r = meta[run_id]
            max_stage = int(r[6]) if r[5] == "finish_stage" and r[6] is not None else None
            cands = ops.claim_candidates(tx, run_id, n, max_stage)
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
                continue
            rows = ops.mark_running(tx, ids, agent_id, now)
            version_id = int(r[7])
            for row in rows:
                claims.append(Claim(
                    task_run_id=int(row[0]), run_id=int(row[1]), version_id=version_id,
                    task=str(row[2]), kind=str(row[3]), item=loads(row[4]),
                    attempt=int(row[5]), max_attempts=int(row[6]), stage=row[7], pool=row[8],
                    parent_id=row[9],
                ))
            ops.bump_run(tx, run_id, running=len(rows), ready=-len(rows))
        if claims:
            ops.insert_attempts(tx, [(c.task_run_id, c.run_id, c.attempt, agent_id, now)
                                     for c in claims])
            ops.add_events(tx, [(now, c.run_id, c.task_run_id, "running", None)
                                for c in claims])
        return claims

    def _finish(self, tx: Tx, claim: Claim, outcome: Outcome, now: float,
                result: StepResult) -> None:
        if outcome.expanded:
            return
        run = ops.run_row(tx, claim.run_id, lock=True)
        assert run is not None
        retry = (outcome.state == TaskState.FAILED and claim.attempt < claim.max_attempts
                 and run.halt is None)
        state = TaskState.RUNNING if retry else outcome.state
        row = ops.end_running(
            tx, claim.task_run_id, claim.attempt, str(state), now, outcome.exit_code,
            None if outcome.result is None else dumps(outcome.result), outcome.error,
        )
        attempt_state = "lost" if outcome.retry_now else str(outcome.state)
        if row is None:
            result.stale.append(claim.task_run_id)  # fenced off: a newer owner or a cancel
            return
        ops.finish_attempt(tx, claim.task_run_id, claim.attempt, attempt_state, now,
                           outcome.exit_code, outcome.error)
        if retry:
            delay = 0.0 if outcome.retry_now else retry_delay(
                self.task_spec(claim.version_id, claim.task), claim.attempt)
            due = now + delay
            if delay <= 0:
                ops.set_states(tx, [(claim.task_run_id, "ready")], now)
                run = ops.bump_run(tx, claim.run_id, running=-1, ready=1)
                ops.add_events(tx, [(now, claim.run_id, claim.task_run_id, "ready",
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
                now: float, delta: _Delta, detail: str | None = None) -> None:
        """Propagate terminal states through the graph inside the current transaction."""
        work: deque[tuple[TaskRunRow, TaskState]] = deque(first)
        first_id = work[0][0].id if work else None
        # Outside `continue`, a task that never starts because an upstream failed ends
        # `skipped` (SPEC 2), yet still counts as failed for its own dependants' rules.
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
        """Hook for what follows a run's end (sub-job parents, cross-job triggers)."""
        if run.parent_task_run_id is not None:
            self._child_run_ended(tx, run, now)
        triggers.after_run_end(self, tx, run, now)

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
            if not ops.hold_foreach_parent(tx, claim.task_run_id, claim.attempt):
                return None
            spec = self.task_spec(claim.version_id, claim.task)
            now = self.clock()
            n = 0
            for chunk in chunks:
                rows = [{
                    "run": claim.run_id, "task": claim.task, "parent": claim.task_run_id,
                    "idx": n + i, "item": dumps(item), "kind": "task", "stage": claim.stage,
                    "state": "ready", "rule": str(spec.trigger), "pend": 0,
                    "prio": spec.priority, "rank": -spec.priority, "pool": spec.pool,
                    "maxa": spec.retries + 1, "ready_at": now,
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
            if tx.run("UPDATE task_runs SET agent_id = NULL WHERE id = :i AND state = 'running'"
                      " AND attempts = :a", {"i": claim.task_run_id, "a": claim.attempt}) != 1:
                return None
            chain = self._job_ancestry(tx, claim.run_id)
            if job_name in chain:
                raise UsageError("job cycle: " + " -> ".join([*reversed(chain), job_name]))
            run = ops.run_row(tx, claim.run_id)
            assert run is not None
            child = self._create_run(tx, spec, version_id, {**spec.params, **params}, "job",
                                     str(claim.task_run_id), claim.task_run_id,
                                     run.root_run_id)
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
        self._finish(tx, claim, outcome, now, StepResult())

    def _check_job_calls(self, tx: Tx, spec: JobSpec) -> None:
        """Refuse a definition whose job tasks lead back to itself (a -> b -> a)."""
        calls: dict[str, list[str]] = {
            spec.name: sorted({str(t.command) for t in spec.tasks if t.kind == "job"})}

        def callees(name: str) -> list[str]:
            if name not in calls:
                found: list[str] = []
                job = ops.job_by_name(tx, name)
                if job is not None and job[2] is not None:
                    row = ops.version_row(tx, int(job[2]))
                    tasks = loads(row[4]).get("tasks", {}) if row else {}
                    found = sorted({str(t["job"]) for t in tasks.values()
                                    if isinstance(t, dict) and "job" in t})
                calls[name] = found
            return calls[name]

        path = [spec.name]
        seen: set[str] = set()

        def visit(name: str) -> None:
            for callee in callees(name):
                if callee == spec.name:
                    raise UsageError("job cycle: " + " -> ".join([*path, callee]))
                if callee not in seen:
                    seen.add(callee)
                    path.append(callee)
                    visit(callee)
                    path.pop()

        visit(spec.name)

    # -- commands from users ----------------------------------------------------------------
    def cancel_run(self, run_id: int) -> str:
        return self._halt_by_user(run_id, "user_cancel")

    def stop_run(self, run_id: int) -> str:
        return self._halt_by_user(run_id, "user_stop")

    def _halt_by_user(self, run_id: int, halt: str) -> str:
        with self.store.tx() as tx:
            run = ops.run_row(tx, run_id, lock=True)
            if run is None:
                raise NotFoundError(f"no run {run_id}")
            if run.state in TERMINAL_RUN_STATES:
                return run.state
            now = self.clock()
            ops.set_halt(tx, run_id, halt, None)
            run.halt = halt
            if halt == "user_cancel" or run.running == 0:
                run = self._finalize(tx, run, now, cancel_running=halt == "user_cancel")
                self._on_run_end(tx, run, now)
            else:
                ops.set_run_state(tx, run_id, RunState.STOPPING, now=now)
                run.state = str(RunState.STOPPING)
            tx.wake = True
            return run.state

    def retry_run(self, run_id: int, task: str | None = None) -> int:
        """Rerun in place every task run of a finished run that did not succeed.

        Succeeded task runs keep their state and results. With `task`, only that task and
        the task runs downstream of it are reconsidered. Returns how many were reset.
        """
        # The pinned definition is read before the write transaction: job_spec opens its own
        # read, which SQLite refuses inside this thread's open transaction.
        spec = self.job_spec(self.run_meta(run_id)[0])
        with self.store.tx() as tx:
            run = ops.run_row(tx, run_id, lock=True)
            if run is None:
                raise NotFoundError(f"no run {run_id}")
            if run.state not in TERMINAL_RUN_STATES:
                raise UsageError(f"run {run_id} is {run.state}; retry takes a finished run")
            rows = tx.all(
                "SELECT id, task, kind, parent_id, state, attempts, pending_children"
                " FROM task_runs WHERE run_id = :r", {"r": run_id})
            edges = tx.all(
                "SELECT e.up_id, e.down_id FROM task_edges e JOIN task_runs t"
                " ON t.id = e.down_id WHERE t.run_id = :r", {"r": run_id})
            state_of = {int(r[0]): str(r[4]) for r in rows}
            downs: dict[int, list[int]] = {}
            ups: dict[int, list[int]] = {}
            for u, d in edges:
                downs.setdefault(int(u), []).append(int(d))
                ups.setdefault(int(d), []).append(int(u))
            top = [r for r in rows if r[3] is None]
            if task is not None:
                starts = [int(r[0]) for r in top if r[1] == task]
                if not starts:
                    raise NotFoundError(f"run {run_id} has no task {task!r}")
                scope: set[int] = set()
                todo = list(starts)
                while todo:
                    n = todo.pop()
                    if n not in scope:
                        scope.add(n)
                        todo.extend(downs.get(n, []))
            else:
                scope = {int(r[0]) for r in top}
            redo = {i for i in scope if state_of[i] != "succeeded"}
            if not redo:
                return 0  # nothing to rerun: the finished run is left exactly as it was
            children: dict[int, list[tuple[int, str]]] = {}
            for r in rows:
                if r[3] is not None:
                    children.setdefault(int(r[3]), []).append((int(r[0]), str(r[4])))
            now = self.clock()
            writes: list[dict[str, Any]] = []
            settle: list[tuple[int, TaskState]] = []
            ready = 0
            for r in top:
                tr_id = int(r[0])
                if tr_id not in redo:
                    continue
                name, kind = str(r[1]), str(r[2])
                task_spec = None if kind == "barrier" else spec.task(name)
                extra = 1 + (task_spec.retries if task_spec else 0)
                kids = [k for k, s in children.get(tr_id, []) if s != "succeeded"]
                pending = sum(1 for u in ups.get(tr_id, []) if u in redo)
                failed = sum(1 for u in ups.get(tr_id, [])
                             if u not in redo and state_of[u] in FAILED_LIKE)
                if kids:
                    # An expanded foreach reruns its unfinished items under the same parent.
                    writes.extend({"i": k, "s": "ready", "p": 0, "f": 0, "c": 0, "m": extra,
                                   "t": now} for k in kids)
                    ready += len(kids)
                    new_state = "running"
                elif pending:
                    new_state = "pending"
                else:
                    rule = str(task_spec.trigger) if task_spec else "all_done"
                    resolved = resolve_trigger(kind, rule, failed)
                    new_state = str(resolved)
                    if resolved == TaskState.READY:
                        ready += 1
                    else:
                        settle.append((tr_id, resolved))
                writes.append({"i": tr_id, "s": new_state, "p": pending, "f": failed,
                               "c": len(kids), "m": extra, "t": now})
            tx.many(
                "UPDATE task_runs SET state = :s, pending_up = :p, failed_up = :f,"
                " pending_children = :c, failed_children = 0, max_attempts = attempts + :m,"
                " error = NULL, exit_code = NULL, finished_at = NULL, result = NULL,"
                " ready_at = CASE WHEN :s = 'ready' THEN :t ELSE NULL END, agent_id = NULL"
                " WHERE id = :i",
                writes,
            )
            tx.run(
                "UPDATE runs SET state = 'running', halt = NULL, halt_stage = NULL,"
                " unfinished = :u, running = 0, ready = :rd, failed = 0, finished_at = NULL,"
                " error = NULL WHERE id = :r",
                {"u": len(writes), "rd": ready, "r": run_id},
            )
            ops.add_events(tx, [(now, run_id, None, "running", "retry")]
                           + [(now, run_id, int(w["i"]), str(w["s"]), "retry") for w in writes
                              if (int(w["i"]), w["s"]) not in settle])
            fresh = ops.run_row(tx, run_id)
            assert fresh is not None
            delta = _Delta()
            firsts = [(ops.task_run(tx, i), st) for i, st in settle]
            self._settle(tx, fresh, [(t, st) for t, st in firsts if t is not None], now, delta)
            self._close_step(tx, fresh, now, delta, None)
            tx.wake = True
            return len(writes)

    # -- timers and recovery ----------------------------------------------------------------
    def promote_retries(self) -> float | None:
        """Make due retries ready; returns when the next one is due."""
        with self.store.tx() as tx:
            now = self.clock()
            ops.lock_runs(tx, ops.runs_with_due_retries(tx, now))
            rows = ops.due_retries(tx, now)
            per_run: dict[int, int] = {}
            for _tr, run_id in rows:
                per_run[int(run_id)] = per_run.get(int(run_id), 0) + 1
            for run_id, n in per_run.items():
                ops.bump_run(tx, run_id, ready=n)
            if rows:
                ops.add_events(tx, [(now, int(r), int(t), "ready", "retry due") for t, r in rows])
                tx.wake = True
            return ops.next_retry_due(tx)

    def next_retry_due(self) -> float | None:
        with self.store.read() as tx:
            return ops.next_retry_due(tx)

    def register_agent(self, name: str, host: str, pid: int, slots: int, lease: float) -> int:
        with self.store.tx() as tx:
            return ops.insert_agent(tx, name, host, pid, slots, self.clock(), lease)

    def heartbeat(self, agent_id: int, lease: float, state: str | None = None) -> bool:
        with self.store.tx() as tx:
            return ops.heartbeat(tx, agent_id, self.clock(), lease, state) > 0

    def agent_stopped(self, agent_id: int) -> None:
        with self.store.tx() as tx:
            ops.set_agent_state(tx, agent_id, "stopped", self.clock())

    def reap(self) -> int:
        """Recover the task runs of agents whose lease expired. Returns how many."""
        now = self.clock()
        with self.store.read() as tx:
            dead = ops.expired_agents(tx, now)
        count = 0
        for agent_id in dead:
            with self.store.tx() as tx:
                if tx.run("UPDATE agents SET state = 'lost' WHERE id = :a AND state IN"
                          " ('alive', 'draining') AND lease_until < :t",
                          {"a": agent_id, "t": now}) == 0:
                    continue  # another reaper got it first
                rows = tx.all(
                    "SELECT t.id, t.run_id, r.version_id, t.task, t.kind, t.item, t.attempts,"
                    " t.max_attempts, t.stage, t.pool, t.parent_id FROM task_runs t"
                    " JOIN runs r ON r.id = t.run_id WHERE t.agent_id = :a"
                    " AND t.state = 'running'", {"a": agent_id})
                result = StepResult()
                for r in rows:
                    claim = Claim(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]),
                                  loads(r[5]), int(r[6]), int(r[7]), r[8], r[9], r[10])
                    self._finish(tx, claim, Outcome(TaskState.FAILED, error="agent lost",
                                                    retry_now=True), now, result)
                    count += 1
                tx.wake = True
        return count

    def release_unstarted(self, agent_id: int, keep: Collection[int]) -> int:
        """Give back task runs held running for this agent that it never started.

        A claim whose commit reply was lost (the store went away mid-commit) may have been
        applied without the agent knowing it holds those task runs. They go back to `ready`
        without using up an attempt; the attempt counter still moves on, as the fencing token.
        Returns how many were given back.
        """
        now = self.clock()
        with self.store.tx() as tx:
            rows = [r for r in tx.all(
                "SELECT t.id, t.run_id, r.version_id, t.task, t.kind, t.item, t.attempts,"
                " t.max_attempts, t.stage, t.pool, t.parent_id FROM task_runs t"
                " JOIN runs r ON r.id = t.run_id WHERE t.agent_id = :a AND t.state = 'running'",
                {"a": agent_id}) if int(r[0]) not in keep]
            if not rows:
                return 0
            ops.lock_runs(tx, [int(r[1]) for r in rows])
            result = StepResult()
            for r in sorted(rows, key=lambda r: (int(r[1]), int(r[0]))):
                tx.run("UPDATE task_runs SET max_attempts = max_attempts + 1 WHERE id = :i",
                       {"i": int(r[0])})
                claim = Claim(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]),
                              loads(r[5]), int(r[6]), int(r[7]) + 1, r[8], r[9], r[10])
                self._finish(tx, claim, Outcome(
                    TaskState.FAILED, error="claimed during a store outage, never started",
                    retry_now=True), now, result)
            tx.wake = True
        return len(rows)

    def still_running(self, tokens: Sequence[tuple[int, int]]) -> set[int]:
        """Which of these (task_run_id, attempt) pairs are still running under that attempt."""
        if not tokens:
            return set()
        wanted = dict(tokens)
        marks = ", ".join(str(int(i)) for i in wanted)
        with self.store.read() as tx:
            rows = tx.all(
                f"SELECT id, attempts FROM task_runs WHERE id IN ({marks}) AND state = 'running'")
        return {int(i) for i, a in rows if wanted.get(int(i)) == int(a)}


def plan_upstreams(spec: JobSpec) -> dict[str, list[str]]:
    """Upstream names of every task run to create, with one barrier node per stage.

    A staged task waits for the barrier of the stage below it; a barrier waits for every task
    of its own stage. This keeps stage barriers O(tasks) edges instead of O(n*m).
    """
    explicit = dag.upstreams(spec.tasks)
    stages = sorted({t.stage for t in spec.tasks if t.stage is not None})
    previous = {s: (stages[i - 1] if i else None) for i, s in enumerate(stages)}
    ups: dict[str, list[str]] = {}
    for t in spec.tasks:
        names = sorted(explicit.get(t.name, set()))
        if t.stage is not None and previous[t.stage] is not None:
            names.append(f"@stage{previous[t.stage]}")
        ups[t.name] = names
    for s in stages:
        ups[f"@stage{s}"] = [t.name for t in spec.tasks if t.stage == s]
    return ups
