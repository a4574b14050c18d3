"""The firings of a whole job: all its schedules merged in time order (for `taskplan next` and
the scheduler)."""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from taskplan.model import JobSpec, ScheduleSpec, Shift
from taskplan.timing.business import MAX_CLOSED_RUN, ClosedDays
from taskplan.timing.schedule import Schedule, compile_schedule
from taskplan.timing.zones import instant_of, spec_instant

Calendars = Mapping[str, ClosedDays] | None


def without_schedules(job: JobSpec, keys: Collection[str]) -> JobSpec:
    """The job as if the schedules of these keys were not there (paused one by one: they make
    no runs, so their firings are nobody's next)."""
    if not keys:
        return job
    return dataclasses.replace(job, schedules=tuple(
        s for s in job.schedules if s.key not in keys))


def job_timezone(job: JobSpec, default_tz: str = "UTC") -> ZoneInfo:
    """The zone a job's schedules are read in: its own, else the configured default."""
    return ZoneInfo(job.timezone or default_tz)


def calendar_names(job: JobSpec) -> set[str]:
    """The named business calendars the job's schedules and exceptions use."""
    names = {s.business_calendar for s in job.schedules if s.business_calendar}
    exceptions = [*job.exceptions, *(e for s in job.schedules for e in s.exceptions)]
    return names | {e.closed_on for e in exceptions if e.closed_on}


def compile_job(job: JobSpec, default_tz: str = "UTC", calendars: Calendars = None
                ) -> list[Schedule]:
    """The job's enabled schedules, each with the job's exceptions and its own; none at all
    when the job itself is disabled (`enabled: false`)."""
    tz = job_timezone(job, default_tz)
    if not job.enabled:
        return []
    return [compile_schedule(s, tz, job.exceptions + s.exceptions, calendars)
            for s in job.schedules if s.enabled]


def next_firings(
    job: JobSpec, after: datetime, n: int, default_tz: str = "UTC", calendars: Calendars = None
) -> list[tuple[datetime, ScheduleSpec]]:
    """The job's next `n` firings strictly after `after`, across all its schedules.

    In time order; two schedules firing at the same instant both appear, the lower
    `ScheduleSpec.index` first. Datetimes are in the job's zone.
    """
    # Keyed by UTC: aware datetimes sharing a tzinfo compare as walls, which misorders the two
    # copies of a fall-back hour.
    heap: list[tuple[datetime, int, int, datetime]] = []
    schedules = compile_job(job, default_tz, calendars)
    for pos, schedule in enumerate(schedules):
        first = schedule.next_after(after)
        if first is not None:
            heap.append((first.astimezone(UTC), schedule.spec.index, pos, first))
    heapq.heapify(heap)
    out: list[tuple[datetime, ScheduleSpec]] = []
    while heap and len(out) < n:
        _, index, pos, when = heapq.heappop(heap)
        schedule = schedules[pos]
        out.append((when, schedule.spec))
        following = schedule.next_after(when)
        if following is not None:
            heapq.heappush(heap, (following.astimezone(UTC), index, pos, following))
    return out


def calendar_skips(
    job: JobSpec, after: datetime, until: datetime, default_tz: str = "UTC",
    calendars: Calendars = None, limit: int = 100,
) -> list[tuple[datetime, ScheduleSpec, str]]:
    """Firings in (after, until] that a business calendar dropped or moved, with why: the
    first `limit` of each schedule, counted apart so that none hides another's.

    Each schedule is replayed without its calendar (its `calendar:` binding and the job's
    `calendar:` exceptions); a firing of that replay on a closed day is reported with the day's
    reason, prefixed "moved to ..." when the schedule shifts it rather than skipping it. A
    schedule whose `max_runs` ends it has nothing skipped after its last firing (nor moved past
    it): nothing would have fired there.
    """
    tz = job_timezone(job, default_tz)
    known = calendars or {}
    out: list[tuple[datetime, ScheduleSpec, str]] = []
    for spec in (job.schedules if job.enabled else ()):
        if not spec.enabled or spec.max_runs == 0:
            continue
        exceptions = job.exceptions + spec.exceptions
        plain_exceptions = tuple(e for e in exceptions if e.closed_on is None)
        closing = [known[e.closed_on] for e in exceptions
                   if e.closed_on is not None and e.closed_on in known]
        own = known.get(spec.business_calendar or "")
        if spec.business_day is not None or (own is None and not closing):
            continue
        free = dataclasses.replace(spec, business_calendar=None, shift=Shift.SKIP,
                                   max_runs=None)
        replay = compile_schedule(free, tz, plain_exceptions)
        last = (compile_schedule(spec, tz, exceptions, calendars).last_firing()
                if spec.max_runs is not None else None)
        # As instants (see next_firings); a firing moved back lands up to MAX_CLOSED_RUN days
        # before its own time.
        end = until.timestamp()
        if last is not None:
            back = own is not None and spec.shift is Shift.PREVIOUS
            end = min(end, (last + timedelta(days=MAX_CLOSED_RUN + 1 if back else 0)).timestamp())
        own_skips: list[tuple[datetime, ScheduleSpec, str]] = []
        at: datetime | None = after
        while len(own_skips) < limit:
            at = replay.next_after(at) if at is not None else None
            if at is None or at.timestamp() > end:
                break
            day = at.astimezone(tz).date()
            reason = own.reason(day) if own is not None else None
            if reason is None:
                reason = next((r for c in closing if (r := c.reason(day)) is not None), None)
                if reason is not None and (last is None or at <= last):
                    own_skips.append((at, spec, reason))
                continue
            target = None
            if own is not None and spec.shift is not Shift.SKIP:
                target = _shift_target(own, day, spec.shift)
                beyond = None if target is None else _beyond(spec, at, target, tz)
                if target is None:  # dropped, not moved
                    reason = (f"no {spec.shift.value} business day within {MAX_CLOSED_RUN}"
                              f" days: {reason}")
                elif beyond is not None:  # moved out of the schedule's bounds: dropped
                    reason = f"no {spec.shift.value} business day {beyond}: {reason}"
                    target = None
                else:
                    reason = f"moved to the {spec.shift.value} business day: {reason}"
            if last is not None:
                # Where it would have fired: moved to `target` at the same local time.
                lands = at if target is None else at.astimezone(tz).replace(
                    year=target.year, month=target.month, day=target.day)
                if lands.replace(tzinfo=None) > last.astimezone(tz).replace(tzinfo=None):
                    continue
            own_skips.append((at, spec, reason))
        out.extend(own_skips)
    out.sort(key=lambda e: (e[0].astimezone(UTC), e[1].index))
    return out


def _beyond(spec: ScheduleSpec, at: datetime, target: date, tz: ZoneInfo) -> str | None:
    """Where a firing moved to `target` falls outside the schedule's start or end (the words
    for it), or None when it is inside."""
    local = at.astimezone(tz)
    try:
        lands = instant_of(local.replace(tzinfo=None, year=target.year, month=target.month,
                                         day=target.day), tz)
        if spec.start is not None and lands < spec_instant(spec.start, tz):
            return "since the schedule's start"
        if spec.end is not None and lands > spec_instant(spec.end, tz):
            return "before the schedule's end"
    except OverflowError:  # at an end of the calendar: no bound is crossed there
        pass
    return None


def _shift_target(closed: ClosedDays, day: date, shift: Shift) -> date | None:
    """The business day a firing on closed `day` moves to, or None when none comes within
    MAX_CLOSED_RUN days (`ShiftedWalls` then drops it)."""
    step = timedelta(days=1 if shift is Shift.NEXT else -1)
    for _ in range(MAX_CLOSED_RUN):
        try:
            day += step
        except OverflowError:
            return None
        if closed.is_open(day):
            return day
    return None


Timeline = list[tuple[datetime, ScheduleSpec, str | None]]


def next_with_skips(job: JobSpec, after: datetime, n: int, default_tz: str = "UTC",
                    calendars: Calendars = None) -> Timeline:
    """The next `n` firings and, among them, the firings business calendars dropped or moved
    (each with its reason), in one time line: what `taskplan next` and the console show."""
    found = next_firings(job, after, n, default_tz=default_tz, calendars=calendars)
    until = (found[-1][0] if len(found) == n
             else after.replace(year=min(after.year + 1, 9999)))
    skips = ([] if calendars is None else
             calendar_skips(job, after, until, default_tz=default_tz, calendars=calendars))
    fired: Timeline = [(at, s, None) for at, s in found]
    return sorted(fired + list(skips), key=lambda e: (e[0].timestamp(), e[2] is None))
