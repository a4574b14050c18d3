"""Backfill: the runs a job's schedules would have made over a past range, made now.

* **The firings** are those of the job's current definition (its enabled schedules, business
  calendars as applied now, and exceptions, computed by `timing`) in [start, end]; `end` is
  capped at now (the scheduler makes the future ones).
* **Exactly once per firing**, by the scheduler's own constraint: a firing is a
  `schedule_firings` row keyed (job, schedule, instant). A backfill takes a firing that has no
  row yet (missed while no scheduler ran, or skipped by `on_misfire: skip`) or a row that made
  no run (skipped while paused or by `on_overlap`), and creates its run in the same
  transaction. A firing that has a run is left alone, so running a backfill twice creates
  nothing the second time, and a scheduler and a backfill never both run one instant.
* **The runs** have trigger `backfill`, `trigger_ref` the backfill's id (a `backfills` row),
  the schedule's params (then `--param` values) and `fire_at` the instant, which templates read
  as `run.fire_time`. They are created `queued` and started in firing order, at most
  `max_active` running at once: the end of one starts the next (in the transaction that ends
  it, see `engine.triggers.after_run_end`; the scheduler's sweep is the backstop). They take no part
  in `on_overlap`, and the job's other runs do not count against `max_active`.
"""

from __future__ import annotations

from dataclasses import field
from datetime import UTC, datetime, timedelta
from typing import Any

from taskplan.dataclass import dataclass
from taskplan.engine import Engine
from taskplan.errors import UsageError
from taskplan.model import JobSpec
from taskplan.rules import declared_params
from taskplan.store import job_admin, sched_ops
from taskplan.timing import calendar_names, compile_job

MAX_FIRINGS = 10_000  # per backfill: a mistyped range should not create a million runs
CHUNK = 200  # firings per transaction
_NOT_RECORDED = sched_ops.FiringOutcome(None, None)  # a firing no scheduler has seen


@dataclass
class Firing:
    at: datetime  # in the job's zone
    schedule: str
    run_id: int | None = None  # its run (existing or made by this backfill)
    new: bool = False  # made (or, dry, would be made) by this backfill
    note: str | None = None  # why an earlier firing of this instant made no run


@dataclass
class Backfill:
    job: str
    start: datetime
    end: datetime
    backfill_id: int | None = None
    firings: list[Firing] = field(default_factory=list)

    @property
    def created(self) -> list[int]:
        return [f.run_id for f in self.firings if f.new and f.run_id is not None]


def locate(engine: Engine, job: str) -> tuple[job_admin.LiveJob, int, JobSpec]:
    """The job, its current version id and definition; NotFoundError with a guess if none."""
    from taskplan.engine.definitions import unknown_job

    with engine.store.read() as tx:
        found = job_admin.live_job(tx, job)
        if found is None:
            raise unknown_job(tx, job)
        version_id = job_admin.current_version_id(tx, found.job_id)
    return found, version_id, engine.job_spec(version_id)


def firings_in(engine: Engine, version_id: int, start: datetime, end: datetime,
               default_tz: str) -> list[Firing]:
    """Every firing of the job's schedules in [start, end], in time order."""
    # As instants: aware datetimes sharing a zone compare (and subtract) by wall clock with
    # their fold ignored, which puts the two copies of a fall-back hour in one place.
    lo, hi = start.astimezone(UTC), end.astimezone(UTC)
    spec = engine.job_spec(version_id)
    calendars = engine.closed_days().closed if calendar_names(spec) else None
    try:
        schedules = compile_job(spec, default_tz, calendars)
    except ValueError as exc:
        raise UsageError(f"{spec.name}: {exc}") from None
    found: list[Firing] = []
    for schedule in schedules:
        at = schedule.next_after(lo - timedelta(microseconds=1))
        while at is not None and at.astimezone(UTC) <= hi:
            found.append(Firing(at, schedule.spec.key))
            if len(found) > MAX_FIRINGS:
                raise UsageError(
                    f"{spec.name}: more than {MAX_FIRINGS} firings between"
                    f" {start.isoformat()} and {end.isoformat()}; backfill a shorter range")
            at = schedule.next_after(at)
    found.sort(key=lambda f: (f.at.astimezone(UTC), f.schedule))
    return found


def backfill(engine: Engine, job: str, start: datetime, end: datetime, *,
             max_active: int | None = None, params: dict[str, Any] | None = None,
             dry_run: bool = False, default_tz: str = "UTC") -> Backfill:
    now = engine.clock()
    if end.timestamp() > now:  # compared as instants, as in firings_in
        end = datetime.fromtimestamp(now, end.tzinfo)
    if start.timestamp() > end.timestamp():
        raise UsageError(f"--from {start.isoformat()} is after --to (or after now:"
                         " a backfill covers past firings only)")
    if max_active is not None and max_active > MAX_FIRINGS:
        # A backfill makes at most MAX_FIRINGS runs, so a larger bound is the same bound; kept
        # so, it fits the store's integer column (3000000000 did not, on PostgreSQL).
        max_active = MAX_FIRINGS
    found, version_id, spec = locate(engine, job)
    params = declared_params(spec, params or {})
    out = Backfill(job, start, end, firings=firings_in(engine, version_id, start, end,
                                                       default_tz))
    by_key = {s.key: s.params for s in spec.schedules}
    with engine.store.read() as tx:
        known = sched_ops.firing_outcomes(tx, found.job_id, start.timestamp(),
                                          end.timestamp())
    for f in out.firings:
        outcome = known.get((f.schedule, f.at.timestamp()), _NOT_RECORDED)
        f.run_id, f.note, f.new = outcome.run_id, outcome.note, outcome.run_id is None
    if dry_run:
        return out
    todo = [f for f in out.firings if f.new]
    for i in range(0, len(todo), CHUNK):
        with engine.store.tx() as tx:
            if out.backfill_id is None:
                out.backfill_id = sched_ops.insert_backfill(
                    tx, found.job_id, start.timestamp(), end.timestamp(), max_active, now)
            for f in todo[i:i + CHUNK]:
                fire_at = f.at.timestamp()
                if not sched_ops.claim_backfill_firing(tx, found.job_id, f.schedule, fire_at,
                                                       now):
                    f.new = False  # a scheduler or another backfill took it meanwhile
                    continue
                f.run_id = engine.create_run(
                    version_id, {**by_key.get(f.schedule, {}), **(params or {})},
                    trigger="backfill", trigger_ref=str(out.backfill_id), tx=tx, queued=True,
                    fire_at=fire_at)
                sched_ops.set_firing_outcome(tx, found.job_id, f.schedule, fire_at, f.run_id,
                                             "backfill")
            # Started as of now, after they were created: `now` was read before the
            # firings were worked out.
            engine.started_deadlines(tx, sched_ops.start_backfill_runs(
                tx, out.backfill_id, engine.clock()))
            tx.wake = True
    return out
