"""The scheduler: one leader at a time turns due schedule firings into runs, exactly once.

* **Leader.** A row `leases(name='scheduler')` names the holder and `until`. A scheduler takes it
  when it has expired (or is its own) and renews it every `lease/3` seconds; a standby retries at
  the same pace, so it takes over within one lease after the leader dies, and at once (woken by
  the commit) when the leader released the lease on a clean stop. Every firing
  transaction re-checks the lease (fencing), and the firing rows' primary key makes a duplicate
  impossible even if two leaders overlapped.
* **No polling.** The loop sleeps until the next due firing over every job's current version
  (computed by `timing`), the next lease renewal, or a commit by another process / thread
  (`Store.wait`); on a wake it re-reads definitions only if `jobs` changed.
* **Exactly once.** A firing is `INSERT INTO schedule_firings ... ON CONFLICT DO NOTHING`; only
  the transaction whose insert took creates the run (trigger `schedule`, trigger_ref the
  schedule's key, the schedule's `params`), in that same transaction.
* **Where a schedule starts.** A schedule considers firings strictly after
  max(its `last_fire_at`, the apply time of the job's current version): applying a job never
  backfills history, and a changed definition starts afresh from its apply time.
* **Misfires.** A due firing more than `grace` seconds (1 s) in the past was missed (no
  scheduler was running). Late is counted from when the leader woke for the pass, not from
  when the pass reads the time: a leader held up by its own work or by a lock another
  process holds (within the busy timeout) is running, and fires what fell due meanwhile. An
  outage (the store unavailable) and a clock jump count as downtime. `on_misfire: skip` fires
  none of the missed (only on-time firings); `run_once` fires the latest due firing once;
  `run_all` fires every missed one, at most `RUN_ALL_CAP` (100, the latest ones), queued
  behind each other unless `on_overlap: allow`. Missed firings that make no run are recorded
  with a note (the latest RUN_ALL_CAP + 1 of them: older ones are not looked at).
* **Overlap** (a top-level run of the job queued, running or stopping at firing time): `skip`
  records the firing with no run and a note; `queue` creates the run `queued`; it starts when
  the job has no run in progress (the engine's run-end hook, and the scheduler's sweep); at
  most one run per job waits, further firings are recorded as skipped; `allow` starts it.
* **Paused jobs** (`taskplan pause`): each due firing is recorded with no run and a note, so the
  schedule moves on and `resume` does not make up the pause (`backfill` does, on request).
* **max_runs.** `timing` stops a schedule after its `max_runs`-th firing from `start`; the
  scheduler also never creates more than `max_runs` runs for one schedule (`fired_count`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeVar

from taskplan.dataclass import dataclass
from taskplan.engine import Engine
from taskplan.engine.deadlines import DeadlineWatch
from taskplan.errors import StoreUnavailableError
from taskplan.model import JobSpec, OnMisfire, OnOverlap
from taskplan.store import notify_ops, sched_ops
from taskplan.store.db import Tx
from taskplan.store.resilience import retrying as store_retrying
from taskplan.timing import Schedule, compile_job

log = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
RUN_ALL_CAP = 100
MISFIRE_GRACE = 1.0
# The longest sleep without looking at anything: the lease renewal interval bounds it anyway.
MAX_SLEEP = 60.0
# A standby woken by a commit looks whether the lease is free (a leader released it) at most
# this often, so it takes over well within the misfire grace instead of at its next renewal.
PEEK_EVERY = 0.2
_NEVER_FIRED = sched_ops.ScheduleMark(0, None)
T = TypeVar("T")


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


@dataclass
class _Job:
    job_id: int
    name: str
    version_id: int
    applied_at: float
    spec: JobSpec
    schedules: list[Schedule]


@dataclass
class FireResult:
    """What one pass did (for tests and logs)."""

    runs: list[int]
    skipped: int
    next_due: float | None


class Scheduler:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] | None = None,
                 holder: str | None = None, lease: float = 6.0, default_tz: str = "UTC"
                 ) -> None:
        self.engine = engine
        self.store = engine.store
        self.clock = clock or engine.clock
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.lease = lease
        self.default_tz = default_tz
        self.leader = False
        self._stop = threading.Event()
        self._mark: tuple[tuple[int, float], tuple[int, float]] | None = None
        self._calendar_stamp: tuple[int, float] | None = None
        self._jobs: list[_Job] = []
        self._compiled: dict[int, list[Schedule]] = {}
        # When the daemon woke for the current pass (wall clock, monotonic), None outside one
        # or after an outage: firings due since then are on time however long the pass takes.
        self._awake: tuple[float, float] | None = None
        self.deadlines = DeadlineWatch(engine, default_tz=default_tz, clock=self.clock)

    # -- leadership -----------------------------------------------------------------------
    def try_lead(self) -> bool:
        """Take or renew the leader lease; returns whether this scheduler leads now."""
        now = self.clock()
        was = self.leader
        with self.store.tx() as tx:
            self.leader = sched_ops.acquire_lease(tx, LEASE_NAME, self.holder, now,
                                                  now + self.lease)
        if self.leader and not was:
            # What it compiled when it last led is stale: the calendars it saw then held back
            # nothing that it could vouch for (see _settle). Read afresh (`_mark` too), so the
            # calendars it sees now are those the next change is settled against.
            self._mark = self._calendar_stamp = None
        return self.leader

    def release(self) -> None:
        if self.leader:
            with self.store.tx() as tx:
                sched_ops.release_lease(tx, LEASE_NAME, self.holder)
                tx.wake = True  # a standby in this process may take over at once
            self.leader = False

    def _lease_free(self) -> bool:
        with self.store.read() as tx:
            return sched_ops.lease_free(tx, LEASE_NAME, self.clock())

    def stop(self) -> None:
        self._stop.set()
        self.store.waker.notify()

    # -- definitions ----------------------------------------------------------------------
    def _refresh(self) -> bool:
        """Re-read jobs if any was added or re-applied; True if something changed."""
        days = self.engine.closed_days()
        stamp, calendars = days.stamp, days.closed
        with self.store.read() as tx:
            mark = (sched_ops.definitions_mark(tx), stamp)
            if mark == self._mark:
                return False
            rows = sched_ops.current_jobs(tx)
        if stamp != self._calendar_stamp:  # a calendar changed: recompile what uses calendars
            if self._calendar_stamp is not None and self.leader:
                self._settle({row.job_id: row.version_id for row in rows}, stamp[1])
            self._compiled.clear()
            self._calendar_stamp = stamp
        jobs = []
        for row in rows:
            spec = self.engine.job_spec(row.version_id)
            if not spec.schedules:
                continue
            compiled = self._compiled.get(row.version_id)
            if compiled is None:
                try:
                    compiled = compile_job(spec, self.default_tz, calendars)
                except ValueError as exc:
                    log.error("job %s: schedules unusable: %s", row.name, exc)
                    compiled = []
                self._compiled[row.version_id] = compiled
            jobs.append(_Job(row.job_id, row.name, row.version_id, row.applied_at, spec,
                             compiled))
        self._jobs = jobs
        self._mark = mark
        return True

    def _settle(self, current: dict[int, int], changed_at: float) -> None:
        """Before a calendar's new version takes effect: the firings its old version kept
        from happening until the change (`changed_at`, its apply time) were decided when they
        fell due, so each schedule that depends on a calendar and has nothing due by then
        moves its mark there. Otherwise reopening a closed day would make the firings it held
        back look missed (and on_misfire would make them up)."""
        depends = [(job, s) for job in self._jobs if current.get(job.job_id) == job.version_id
                   for s in job.schedules if s.uses_calendars]
        if not depends:
            return
        now = self.clock()
        until = min(now, changed_at)
        with self.store.tx() as tx:
            if not sched_ops.holds_lease(tx, LEASE_NAME, self.holder, now):
                return
            states = sched_ops.schedule_states(tx)
            for job, schedule in depends:
                last = states.get((job.job_id, schedule.spec.key), _NEVER_FIRED).last_fire_at
                after = job.applied_at if last is None else max(last, job.applied_at)
                first = schedule.next_after(_dt(after))
                if after < until and (first is None or first.timestamp() > until):
                    sched_ops.advance_schedule(tx, job.job_id, schedule.spec.key, until, 0)

    # -- one pass ---------------------------------------------------------------------------
    def fire_due(self) -> FireResult:
        """Fire every due firing of every job (as leader); returns when the next one is due."""
        self._refresh()
        now = self.clock()
        result = FireResult([], 0, None)
        with self.store.read() as tx:
            states = sched_ops.schedule_states(tx)
        for job in self._jobs:
            for schedule in job.schedules:
                key = schedule.spec.key
                mark = states.get((job.job_id, key), _NEVER_FIRED)
                fired_count, last = mark.fired_count, mark.last_fire_at
                max_runs = schedule.spec.max_runs
                if max_runs is not None and fired_count >= max_runs:
                    continue
                after = job.applied_at if last is None else max(last, job.applied_at)
                first = schedule.next_after(_dt(after))
                if first is None:
                    continue
                if first.timestamp() > now:
                    result.next_due = _earliest(result.next_due, first.timestamp())
                    continue
                due = self._due(schedule, job.spec.on_misfire, after, now)
                if max_runs is not None:
                    due = _within_budget(due, max(0, max_runs - fired_count))
                self._fire(job, key, due, now, result)
                following = schedule.next_after(_dt(now))
                if following is not None:
                    result.next_due = _earliest(result.next_due, following.timestamp())
        return result

    def _on_time_from(self, now: float) -> float:
        """The earliest instant still on time: `grace` before the daemon woke for this pass,
        unless the clock jumped since (then `grace` before now, as after downtime)."""
        if self._awake is not None:
            woke, mono = self._awake
            spent = time.monotonic() - mono
            if woke <= now <= woke + spent + MISFIRE_GRACE:
                return woke - MISFIRE_GRACE
        return now - MISFIRE_GRACE

    def _due(self, schedule: Schedule, policy: OnMisfire, after: float, now: float
             ) -> list[tuple[float, str | None]]:
        """The firings of (after, now], as (instant, None to fire it, else why it is missed);
        the last one always appears so that the schedule's mark moves up to it. Missed firings
        are looked at only as far back as the latest RUN_ALL_CAP + 1."""
        on_time_from = self._on_time_from(now)
        latest = _latest(schedule, after, now, RUN_ALL_CAP + 1)
        if not latest:
            return []
        missed = [t for t in latest if t < on_time_from]
        if not missed:
            return [(t, None) for t in latest]
        why = "skipped: missed while no scheduler ran"
        if policy == OnMisfire.RUN_ALL:
            cut = len(latest) - RUN_ALL_CAP
            return [(t, f"{why} (on_misfire: run_all makes up {RUN_ALL_CAP} at most)"
                     if i < cut else None) for i, t in enumerate(latest)]
        if policy == OnMisfire.RUN_ONCE:
            return [(t, f"{why} (on_misfire: run_once ran the latest only)" if t != latest[-1]
                     else None) for t in latest]
        return [(t, f"{why} (on_misfire: skip)" if t < on_time_from else None) for t in latest]

    def _fire(self, job: _Job, key: str, due: list[tuple[float, str | None]], now: float,
              result: FireResult) -> None:
        if not due:
            return
        spec = job.spec
        schedule_params = next(s.params for s in spec.schedules if s.key == key)
        on_time_from = self._on_time_from(now)
        with self.store.tx() as tx:
            if not sched_ops.holds_lease(tx, LEASE_NAME, self.holder, now):
                self.leader = False
                return  # fenced: another scheduler leads now
            made = 0
            late: list[float] = []  # firings missed while no scheduler ran
            paused = ("skipped: the job is paused" if sched_ops.job_paused(tx, job.job_id)
                      else "skipped: the schedule is paused"
                      if key in sched_ops.paused_schedules(tx, job.job_id) else None)
            # run_all after downtime: the firings of this pass, missed and on time, each
            # make a run, the later ones waiting for the earlier (not skipped as overlaps).
            catch_up = spec.on_misfire == OnMisfire.RUN_ALL and due[0][0] < on_time_from
            for fire_at, missed in due:
                if not sched_ops.insert_schedule_firing(tx, job.job_id, key, fire_at, now):
                    continue  # another scheduler fired it
                if fire_at < on_time_from:
                    late.append(fire_at)
                run_id, note = (None, missed) if missed else (
                    (None, paused) if paused
                    else self._make_run(tx, job, key, schedule_params, fire_at, catch_up))
                sched_ops.set_firing_outcome(tx, job.job_id, key, fire_at, run_id, note)
                fields = {"job": job.name, "schedule": key, "fire_at": _dt(fire_at).isoformat()}
                if run_id is None:
                    result.skipped += 1
                    log.info("firing: job %s schedule %s at %s: %s", job.name, key,
                             fields["fire_at"], note,
                             extra={"event": "firing_skipped", **fields, "reason": note})
                else:
                    made += 1
                    result.runs.append(run_id)
                    log.info("firing: job %s schedule %s at %s: run %s", job.name, key,
                             fields["fire_at"], run_id,
                             extra={"event": "firing", **fields, "run_id": run_id})
            sched_ops.advance_schedule(tx, job.job_id, key, due[-1][0], made)
            if late:
                notify_ops.schedule_misfired(
                    tx, job=job.name, version_id=job.version_id, schedule=key, missed=late,
                    policy=str(job.spec.on_misfire), run_ids=result.runs[len(result.runs) - made:],
                    at=now)

    def _make_run(self, tx: Tx, job: _Job, key: str, params: dict[str, object],
                  fire_at: float, catch_up: bool = False) -> tuple[int | None, str | None]:
        active = sched_ops.active_runs(tx, job.job_id)
        policy = job.spec.on_overlap
        queued = False
        if catch_up and policy != OnOverlap.ALLOW:
            # The firings run_all makes up: each waits for the one before it (skip and queue
            # would otherwise keep only the first of them, the oldest).
            queued = bool(active)
            policy = OnOverlap.ALLOW
        if active and policy == OnOverlap.SKIP:
            return None, "skipped: a run of this job is still active (on_overlap: skip)"
        if active and policy == OnOverlap.QUEUE:
            if active.get("queued"):
                return None, "skipped: a run of this job is already queued (on_overlap: queue)"
            queued = bool(active.get("running") or active.get("stopping"))
        run_id = self.engine.create_run(job.version_id, dict(params), trigger="schedule",
                                        trigger_ref=key, tx=tx, queued=queued,
                                        fire_at=fire_at)
        return run_id, None

    def start_queued(self) -> list[int]:
        """Start queued runs whose job has nothing in progress (a backstop for the run-end
        hook, which cannot see a queued run created concurrently with the end)."""
        started: list[int] = []
        now = self.clock()
        with self.store.tx() as tx:
            for run_id in sched_ops.startable_queued(tx):
                if sched_ops.start_queued(tx, run_id, now):
                    started.append(run_id)
            for backfill_id in sched_ops.queued_backfills(tx):
                started.extend(sched_ops.start_backfill_runs(tx, backfill_id, now))
            self.engine.started_deadlines(tx, started)
            tx.wake = bool(started)
        return started

    def check_deadlines(self) -> list[tuple[int, str]]:
        """Deadline events due now (docs/forecasts.md); a failure is logged, never fatal."""
        try:
            return retrying(self.deadlines.poll, what="checking deadlines",
                            stop=self._stop.is_set)
        except StoreUnavailableError:
            raise
        except Exception:
            log.exception("deadline check failed")
            self.deadlines.next_at = self.clock() + self.deadlines.every
            return []

    # -- the daemon -------------------------------------------------------------------------
    def run(self) -> None:
        """Lead (or stand by) until stop(): fire what is due, sleep until the next instant."""
        gen = self.store.waker.generation
        renew_every = max(0.2, self.lease / 3)
        next_renew = 0.0
        next_due: float | None = None
        # A standby woken by another process's commit (a leader that stopped cleanly released
        # the lease) looks at the lease then, not at its next renewal up to lease/3 later: the
        # firings due meanwhile were otherwise missed "while no scheduler ran" (on_misfire).
        peek = False
        next_peek = 0.0
        try:
            while not self._stop.is_set():
                mono = time.monotonic()
                self._awake = (self.clock(), mono)
                fresh_lead = False
                if peek and not self.leader and next_peek <= mono < next_renew:
                    peek = False
                    next_peek = mono + PEEK_EVERY
                    if self._retrying(self._lease_free, what="reading the scheduler lease"):
                        next_renew = mono
                if mono >= next_renew:
                    was = self.leader
                    self._retrying(self.try_lead, what="taking the scheduler lease")
                    fresh_lead = self.leader and not was
                    if fresh_lead:
                        log.info("scheduler %s leads", self.holder,
                                 extra={"event": "leader", "holder": self.holder,
                                        "leader": True})
                    elif was and not self.leader:
                        log.warning("scheduler %s lost the lead (another holds the lease)",
                                    self.holder, extra={"event": "leader",
                                                        "holder": self.holder, "leader": False})
                    if self.leader:
                        self._retrying(self.start_queued, what="starting queued runs")
                    next_renew = mono + renew_every
                if self.leader:
                    changed = self._retrying(self._refresh, what="reading job definitions")
                    if fresh_lead or changed or (next_due is not None
                                                 and next_due <= self.clock()):
                        res = self._retrying(self.fire_due, what="firing schedules")
                        next_due = res.next_due
                    self.check_deadlines()
                timeout = next_renew - time.monotonic()
                if self.leader and next_due is not None:
                    timeout = min(timeout, next_due - self.clock())
                if self.leader:
                    timeout = min(timeout, self.deadlines.next_at - self.clock())
                elif peek:
                    timeout = min(timeout, next_peek - time.monotonic())
                self._awake = None
                timeout = max(0.0, min(timeout, MAX_SLEEP))
                slept = time.monotonic()
                gen = self.store.wait(gen, timeout)
                # Woken before the timeout: something committed (or a stop, checked above).
                peek = peek or (not self.leader
                                and time.monotonic() - slept < timeout - 0.001)
        finally:
            self._awake = None
            try:
                self.release()
            except Exception:
                log.exception("cannot release the scheduler lease")

    def _retrying(self, fn: Callable[[], T], *, what: str) -> T:
        """`retrying` for the daemon's steps; an outage ends the pass's claim to be awake, so
        what falls due while the store is away is handled as downtime (on_misfire)."""
        def step() -> T:
            try:
                return fn()
            except StoreUnavailableError:
                self._awake = None
                raise

        return retrying(step, what=what, stop=self._stop.is_set)


def retrying(fn: Callable[[], T], *, what: str, stop: Callable[[], bool]) -> T:
    """The store's `retrying`, logging every try in the scheduler's log (with the delay)."""
    return store_retrying(fn, what=what, stop=stop, each_try=log)


def _within_budget(due: list[tuple[float, str | None]], budget: int
                   ) -> list[tuple[float, str | None]]:
    """The firings up to the `budget`-th one to fire (max_runs); missed ones do not count."""
    out: list[tuple[float, str | None]] = []
    for entry in due:
        if entry[1] is None:
            if budget <= 0:
                break
            budget -= 1
        out.append(entry)
    return out


def _earliest(a: float | None, b: float) -> float:
    return b if a is None or b < a else a


def _latest(schedule: Schedule, after: float, now: float, k: int) -> list[float]:
    """Up to the last `k` firings in (after, now], oldest first, without walking the whole
    downtime: the window before `now` doubles until it holds k firings or reaches `after`."""
    span = 1.0
    while True:
        lo = max(after, now - span)
        found: list[float] = []
        at = schedule.next_after(_dt(lo))
        while at is not None and at.timestamp() <= now:
            found.append(at.timestamp())
            if len(found) > 4 * k:
                found = found[-k:]
            at = schedule.next_after(at)
        if len(found) >= k or lo <= after:
            return found[-k:]
        span *= 4
