"""Job definitions and run creation: versions pinned by runs, task runs and edges laid down."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from taskplan.engine.rules import (
    initial_states,
    plan_upstreams,
)
from taskplan.errors import NotFoundError, UsageError
from taskplan.model import (
    BusinessCalendar,
    JobSpec,
    RunState,
    TaskSpec,
    TaskState,
    TriggerRule,
)
from taskplan.store import calendars as calendar_ops
from taskplan.store import ops, sched_ops
from taskplan.store.db import Store, Tx
from taskplan.store.ops import RunRow, dumps, loads
from taskplan.timing.business import ClosedDays, closed_days_of

Clock = Callable[[], float]


RUN_META_CACHE = 4096  # runs whose (version, params) an engine keeps in memory



def unknown_job(tx: Tx, name: str) -> NotFoundError:
    """"no job named 'nightyl'; did you mean 'nightly'?" (the names come from the store)."""
    import difflib

    guess = difflib.get_close_matches(name, sched_ops.job_names(tx), n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else " (taskplan jobs lists them)"
    return NotFoundError(f"no job named {name!r}{hint}")

class Definitions:
    def __init__(self, store: Store, clock: Clock = time.time) -> None:
        self.store = store
        self.clock = clock
        # The zone of jobs that name none (taskplan.toml `timezone`): `run.fire_time` and a
        # deadline's `finish_by` use it.
        self.default_tz = "UTC"
        # taskplan.toml's [connections] (name -> URL, references unresolved), for sql tasks.
        self.shared_connections: dict[str, str] = {}
        self._specs: dict[int, JobSpec] = {}
        self._specs_lock = threading.Lock()
        # One thread at a time rebuilds a definition: the slots that claim the first tasks of
        # a new version would otherwise each parse it (20 ms for 1,000 tasks), all at once.
        self._load_lock = threading.Lock()
        self._tasks: dict[int, dict[str, TaskSpec]] = {}
        # Bounded: a daemon sees runs without end, but only the active ones are asked about.
        # run id -> (version id, params, fire_at or else created_at)
        self._run_meta: OrderedDict[int, tuple[int, dict[str, Any], float]] = OrderedDict()
        self._calendars: tuple[tuple[int, float], dict[str, ClosedDays]] | None = None
        # Label sets (sorted, comma-joined) -> id, only those known committed: never change.
        self._label_set_ids: dict[str, int] = {}
        # The label_sets rows read so far (by id, up to _label_sets_upto) and agents' labels,
        # both immutable; what an agent may claim is derived from them (Dispatch._claim).
        self._label_sets: dict[int, frozenset[str]] = {}
        self._label_sets_upto = 0
        self._agent_labels: dict[int, frozenset[str]] = {}

    # -- business calendars -----------------------------------------------------------------
    def apply_calendar(self, cal: BusinessCalendar) -> tuple[int, bool]:
        """Store a business calendar. Returns (version number, changed)."""
        from taskplan.spec import definition_hash

        with self.store.tx() as tx:
            return calendar_ops.apply_calendar(
                tx, cal.name, dumps(cal.definition), definition_hash(cal.definition),
                cal.source_path, self.clock())

    def business_calendars(self) -> dict[str, BusinessCalendar]:
        """Every applied calendar at its current version."""
        from taskplan.spec import calendar_from_definition

        with self.store.read() as tx:
            rows = calendar_ops.current_calendars(tx)
        return {r.name: calendar_from_definition(r.definition, r.source_path) for r in rows}

    def closed_days(self) -> tuple[tuple[int, float], dict[str, ClosedDays]]:
        """The closed days of every applied calendar, and the stamp they were read at; rebuilt
        only when a calendar changed (one cheap query otherwise)."""
        with self.store.read() as tx:
            stamp = calendar_ops.calendars_stamp(tx)
        cached = self._calendars
        if cached is not None and cached[0] == stamp:
            return cached
        fresh = (stamp, closed_days_of(self.business_calendars()) if stamp[0] else {})
        self._calendars = fresh
        return fresh

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
            current = ops.version_row(tx, int(job[2])) if job and job[2] is not None else None
            if current and current[3] == digest:
                for name, size in spec.pools.items():
                    ops.upsert_pool(tx, name, size)
                vid, number, changed = int(current[0]), int(current[2]), False
            else:
                vid, number, changed = self._insert_version(tx, spec, job_id, digest, now)
        # The version holds exactly this definition: `run` after `apply` need not rebuild it.
        with self._specs_lock:
            self._specs.setdefault(vid, spec)
        return vid, number, changed

    def _insert_version(self, tx: Tx, spec: JobSpec, job_id: int, digest: str, now: float
                        ) -> tuple[int, int, bool]:
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
        if tx is None:
            with self._load_lock:
                spec = self._specs.get(version_id)
                return spec if spec is not None else self._load_spec(version_id, None)
        return self._load_spec(version_id, tx)

    def _load_spec(self, version_id: int, tx: Tx | None) -> JobSpec:
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
                raise unknown_job(tx, job_name)
        return int(job[2])

    # -- runs -------------------------------------------------------------------------------
    def create_run(self, version_id: int, params: dict[str, Any] | None = None, *,
                   trigger: str = "manual", trigger_ref: str | None = None,
                   parent_task_run_id: int | None = None, root_run_id: int | None = None,
                   tx: Tx | None = None, queued: bool = False,
                   fire_at: float | None = None, pin_agent_id: int | None = None) -> int:
        """A new run; with `queued` it stays `queued` (no claims) until something starts it.
        `fire_at`: the schedule instant it stands for (templates' `run.fire_time`).
        `pin_agent_id`: only that agent claims the run's task runs while it is alive (a
        foreground `taskplan run`); see docs/routing.md."""
        spec = self.job_spec(version_id, tx)
        merged = {**spec.params, **(params or {})}
        if tx is not None:
            return self._create_run(tx, spec, version_id, merged, trigger, trigger_ref,
                                    parent_task_run_id, root_run_id, queued, fire_at,
                                    pin_agent_id)
        with self.store.tx() as new_tx:
            return self._create_run(new_tx, spec, version_id, merged, trigger, trigger_ref,
                                    parent_task_run_id, root_run_id, queued, fire_at,
                                    pin_agent_id)

    def pin_run(self, run_id: int, agent_id: int | None) -> None:
        """Pin a run to an agent (None: unpin), e.g. before a foreground `retry`."""
        with self.store.tx() as tx:
            ops.set_run_routing(tx, run_id, pin_agent_id=agent_id)

    def _label_set(self, tx: Tx, labels: tuple[str, ...]) -> int | None:
        """The label_sets id of a task's required labels (None: it needs none)."""
        if not labels:
            return None
        key = ",".join(labels)
        found = self._label_set_ids.get(key)
        if found is None:
            found, committed = ops.label_set_id(tx, key)
            if committed:  # a new row may still roll back with this transaction
                self._label_set_ids[key] = found
        return found

    def _create_run(self, tx: Tx, spec: JobSpec, version_id: int, params: dict[str, Any],
                    trigger: str, trigger_ref: str | None, parent_task_run_id: int | None,
                    root_run_id: int | None, queued: bool = False,
                    fire_at: float | None = None, pin_agent_id: int | None = None) -> int:
        now = self.clock()
        job_id = tx.scalar("SELECT job_id FROM job_versions WHERE id = :v", {"v": version_id})
        run_id = ops.insert_run(
            tx, job_id=int(job_id), version_id=version_id, params=params, trigger=trigger,
            trigger_ref=trigger_ref, priority=spec.priority, max_parallel=spec.max_parallel,
            on_failure=str(spec.on_failure), parent_task_run_id=parent_task_run_id,
            root_run_id=root_run_id, now=now, fire_at=fire_at,
        )
        ups = plan_upstreams(spec)
        initial = initial_states(spec, ups)
        by_name = {t.name: t for t in spec.tasks}  # JobSpec.task() is a linear scan
        rows: list[dict[str, Any]] = []
        ready = unfinished = 0
        max_label_set = 0
        for name in ups:
            is_barrier = name.startswith("@")
            task = None if is_barrier else by_name[name]
            label_set = self._label_set(tx, task.agent_labels) if task else None
            max_label_set = max(max_label_set, label_set or 0)
            state, pend = initial[name]
            ready += state == TaskState.READY
            unfinished += state in (TaskState.READY, TaskState.PENDING)
            rows.append({
                "run": run_id, "task": name, "parent": None, "idx": None, "item": None,
                "kind": "barrier" if is_barrier else ("foreach" if task and task.foreach
                                                       else "task"),
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
                "ls": label_set,
            })
        ops.insert_task_runs(tx, rows)
        if pin_agent_id is not None or max_label_set:
            ops.set_run_routing(tx, run_id, pin_agent_id=pin_agent_id,
                                max_label_set=max_label_set)
        ids = ops.task_ids(tx, run_id)
        ops.insert_edges(tx, [(ids[u], ids[d]) for d, us in ups.items() for u in us])
        ops.bump_run(tx, run_id, unfinished=unfinished, ready=ready)
        ended = [(ids[r["task"]], r["state"]) for r in rows
                 if r["state"] not in ("ready", "pending")]
        if ended:  # disabled tasks, and what they resolved at creation
            ops.set_states(tx, ended, now)
        if queued:
            ops.add_events(tx, [(now, run_id, None, str(RunState.QUEUED), None)])
        else:
            ops.set_run_state(tx, run_id, RunState.RUNNING, now=now, started=True)
        ops.add_events(tx, [(now, run_id, ids[r["task"]], r["state"], None)
                            for r in rows if r["state"] != "pending"])
        if not unfinished and not queued:  # every task disabled: nothing to wait for
            ops.set_run_state(tx, run_id, RunState.SUCCEEDED, now=now, finished=True)
            run = ops.run_row(tx, run_id)
            assert run is not None
            self._on_run_end(tx, run, now)
        if spec.deadline is not None:
            self._set_deadline(tx, spec, run_id)
        tx.wake = True
        return run_id

    def _set_deadline(self, tx: Tx, spec: JobSpec, run_id: int) -> None:
        from taskplan.forecast.deadlines import PENDING, deadline_at
        from taskplan.store import deadlines

        assert spec.deadline is not None
        fired, started = deadlines.run_times(tx, run_id)
        at = deadline_at(spec.deadline, spec.timezone or self.default_tz, fired, started)
        deadlines.set_deadline(tx, run_id, at, None if at is not None else PENDING)

    def _on_run_end(self, tx: Tx, run: RunRow, now: float) -> None:
        """What follows a run's end inside its transaction (the dispatch layer fills it in)."""

    def run_state(self, run_id: int) -> str:
        with self.store.read() as tx:
            state = tx.scalar("SELECT state FROM runs WHERE id = :r", {"r": run_id})
        if state is None:
            raise NotFoundError(f"no run {run_id}")
        return str(state)

    def run_meta(self, run_id: int) -> tuple[int, dict[str, Any]]:
        """(version_id, params) of a run; immutable, so cached."""
        meta = self._meta(run_id)
        return meta[0], meta[1]

    def run_fire_at(self, run_id: int) -> float:
        """The schedule instant a scheduled or backfilled run stands for; else its creation."""
        return self._meta(run_id)[2]

    def _forget_run_meta(self, run_id: int) -> None:
        """The run was moved to another version (retry --latest): read it again next time."""
        with self._specs_lock:
            self._run_meta.pop(run_id, None)

    def _meta(self, run_id: int) -> tuple[int, dict[str, Any], float]:
        with self._specs_lock:
            meta = self._run_meta.get(run_id)
            if meta is not None:
                self._run_meta.move_to_end(run_id)
                return meta
        with self.store.read() as tx:
            row = tx.one("SELECT version_id, params, COALESCE(fire_at, created_at) FROM runs"
                         " WHERE id = :r", {"r": run_id})
        if row is None:
            raise NotFoundError(f"no run {run_id}")
        meta = (int(row[0]), loads(row[1]), float(row[2]))
        with self._specs_lock:
            self._run_meta[run_id] = meta
            if len(self._run_meta) > RUN_META_CACHE:
                self._run_meta.popitem(last=False)
        return meta

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

