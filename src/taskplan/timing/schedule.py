"""A compiled schedule: one `ScheduleSpec` in one time zone, with the job's exceptions.

Policies (docs/schedules.md):

* `start` and `end` are walls in the job's zone (read like any listed time: a gap time is shifted,
  a repeated one is the first occurrence). Firings before `start` or after `end` never happen;
  both bounds are inclusive. An aware `start`/`end`/`once` is taken as the instant it names.
* `max_runs`: only the first `max_runs` firings counted from `start` ever happen, so it needs
  `start` (except on `once`, which fires at most once anyway); `compile_schedule` refuses it
  without one. Suppressed firings do not count. The cut-off is found by one walk from `start`
  (O(max_runs), arithmetic for `every` without exceptions), cached per process.
* Exceptions: a firing is suppressed when an exception matches its local time, or the wall time
  it was listed as before a DST shift. A whole-day exception (no times) suppresses every firing on
  that local day.
* `every` is absolute time: `start + k * every` exactly; without `start` it counts from local
  midnight 1970-01-01 in the job's zone.
* Cron and calendar are wall-clock times; see `walls` for DST (gap: shifted forward once;
  fall-back: first occurrence; every-hour cadences follow real time).
* The cost of a query does not grow with the age of the schedule: every kind is asked from `after`.
* A schedule whose firings are all suppressed for 100 years after `after` (or for 20,000
  candidate firings in a row) is treated as exhausted: a pure function cannot prove the
  exceptions cover every future firing, and the search must end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from taskplan.model import Calendar, ScheduleSpec
from taskplan.timing.business import ClosedDays, resolve
from taskplan.timing.calendar import ExceptionRule
from taskplan.timing.sources import EverySource, Source, make_source
from taskplan.timing.zones import instant_of, require_aware, spec_instant, wall_of

_TICK = timedelta(microseconds=1)
_EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
# Consecutive suppressed firings examined before a schedule is called exhausted. Whole-day
# suppressions jump over days (below), so only time-by-time suppressions add up here: a
# minutely schedule would need two weeks of consecutive excepted minutes.
_SUPPRESS_LIMIT = 20_000
# How far past `after` a search goes through suppressed firings before calling it exhausted.
_HORIZON_DAYS = 100 * 366


class _Exhausted(Exception):
    """No firing survives the exceptions within the horizon."""


class Schedule:
    """The firings of one schedule; build it with `compile_schedule`."""

    def __init__(self, spec: ScheduleSpec, tz: ZoneInfo, exceptions: Sequence[Calendar] = (),
                 calendars: Mapping[str, ClosedDays] | None = None):
        if spec.max_runs is not None and spec.start is None and spec.once is None:
            raise ValueError(f"schedule {spec.key}: max_runs needs a start to count from")
        if spec.max_runs is not None and spec.max_runs < 0:
            raise ValueError(f"schedule {spec.key}: max_runs must not be negative")
        self.spec = spec
        self.tz = tz
        self.exceptions = tuple(exceptions)
        self._source: Source = make_source(spec, tz, calendars)
        self._rules = tuple(
            ExceptionRule(c, None if c.closed_on is None else resolve(c.closed_on, calendars))
            for c in self.exceptions)
        # What decides the firings of a named calendar: its object (rebuilt on a new version).
        self._calendar_ids = tuple(sorted(
            id(c) for name, c in (calendars or {}).items()
            if name == spec.business_calendar or any(e.closed_on == name for e in exceptions)))
        self._start = None if spec.start is None else spec_instant(spec.start, tz)
        self._end = None if spec.end is None else spec_instant(spec.end, tz)

    @property
    def uses_calendars(self) -> bool:
        """Whether a named business calendar decides some of its firings (a calendar's new
        version changes them without a new version of the job)."""
        return self.spec.business_calendar is not None or any(
            e.closed_on is not None for e in self.exceptions)

    def next_after(self, after: datetime) -> datetime | None:
        """The first firing strictly after `after` (aware), in the schedule's zone; None if none."""
        if self.spec.max_runs == 0:
            return None
        try:
            after = require_aware(after, "after")
        except OverflowError:
            # A wall at an end of the calendar whose zone takes it past the end in UTC
            # (0001-01-01 east of Greenwich, 9999-12-31 west of it).
            if after.year > _EARLIEST.year:
                return None
            after = _EARLIEST
        try:
            hit = self._next_unlimited(after)
        except OverflowError:
            # Near the ends of the calendar the wall arithmetic leaves datetime's range: past
            # year 9999 there is no firing; before year 2 start from a representable instant.
            if after.year > _EARLIEST.year:
                return None
            hit = self._next_unlimited(_EARLIEST)
        if hit is None:
            return None
        if self.spec.max_runs is not None:
            last = _last_allowed(self)
            if last is not None and hit > last:
                return None
        return hit.astimezone(self.tz)

    def last_firing(self) -> datetime | None:
        """The last firing `max_runs` lets happen (UTC), or None when it sets no bound (no
        max_runs, or never reached). Only meaningful with max_runs > 0."""
        return _last_allowed(self) if self.spec.max_runs else None

    def _next_unlimited(self, after: datetime) -> datetime | None:
        """next_after without max_runs, in UTC."""
        if self._start is not None and after < self._start:
            after = self._start - _TICK
        from_day = wall_of(after, self.tz).date()
        horizon = date.max - from_day > timedelta(days=_HORIZON_DAYS)
        last_day = from_day + timedelta(days=_HORIZON_DAYS) if horizon else date.max
        for _ in range(_SUPPRESS_LIMIT):
            found = self._source.next_after(after)
            if found is None:
                return None
            instant, listed = found
            if self._end is not None and instant > self._end:
                return None
            try:
                resume = self._suppressed(instant, listed, last_day)
            except _Exhausted:
                return None
            if resume is None:
                return instant
            after = resume
        return None

    def _suppressed(
        self, instant: datetime, listed: datetime | None, last_day: date
    ) -> datetime | None:
        """None if the firing stands, else the instant to resume the search after."""
        local = wall_of(instant, self.tz)
        for rule in self._rules:
            if rule.matches(local):
                if rule.whole_day:
                    # Everything else on this local day is suppressed too: go to the next day
                    # that can fire at all, without computing the firings in between.
                    day = self._next_open_day(local.date(), last_day)
                    return max(instant, self._start_of_day(day) - _TICK)
                return instant
            if listed is not None and rule.matches(listed):
                return instant
        return None

    def _next_open_day(self, day: date, last_day: date) -> date:
        """The first local day after `day` that may hold a firing no whole-day rule suppresses."""
        whole_day = [r for r in self._rules if r.whole_day]
        while day < last_day:
            day += timedelta(days=1)
            if self._source.may_fire_on(day) and not any(r.matches_day(day) for r in whole_day):
                return day
        raise _Exhausted

    def _start_of_day(self, day: date) -> datetime:
        """The first instant whose local date is `day` (midnight, or the end of a gap there)."""
        return instant_of(datetime.combine(day, time()), self.tz)

    def _cache_key(self) -> tuple[object, ...]:
        s = self.spec
        return (s.cron, s.calendar, s.every, s.once, s.start, s.end, s.max_runs, self.tz,
                self.exceptions, s.business_calendar, s.business_day, s.shift,
                self._calendar_ids)


def compile_schedule(
    spec: ScheduleSpec, tz: ZoneInfo, exceptions: Sequence[Calendar] = (),
    calendars: Mapping[str, ClosedDays] | None = None,
) -> Schedule:
    """Check and prepare one schedule; raises ValueError if the spec is unusable (including a
    named calendar missing from `calendars`)."""
    return Schedule(spec, tz, exceptions, calendars)


def _last_allowed(schedule: Schedule) -> datetime | None:
    """The max_runs-th firing (UTC), or None if the schedule never reaches max_runs."""
    return _last_allowed_cached(_Keyed(schedule))


class _Keyed:
    """Hashes a schedule by what decides its firings (ScheduleSpec itself holds a dict)."""

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.key = schedule._cache_key()

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Keyed) and self.key == other.key


@lru_cache(maxsize=1024)
def _last_allowed_cached(keyed: _Keyed) -> datetime | None:
    schedule = keyed.schedule
    runs = schedule.spec.max_runs
    assert runs is not None and runs > 0
    source = schedule._source
    if isinstance(source, EverySource) and not schedule._rules and schedule._start is not None:
        try:
            last = source.nth(runs - 1)  # `every` is anchored at `start`
        except OverflowError:  # beyond year 9999: never reached
            return None
        return None if schedule._end is not None and last > schedule._end else last
    at = datetime.min.replace(tzinfo=UTC)
    for _ in range(runs):
        found = schedule._next_unlimited(at)
        if found is None:
            return None
        at = found
    return at


def firings(schedule: Schedule, after: datetime, n: int) -> list[datetime]:
    """The next `n` firings strictly after `after` (fewer if the schedule runs out)."""
    out: list[datetime] = []
    at: datetime | None = after
    while len(out) < n and at is not None:
        at = schedule.next_after(at)
        if at is not None:
            out.append(at)
    return out


def count_firings_between(
    schedule: Schedule, start: datetime, end: datetime, limit: int | None = None
) -> int:
    """How many firings fall in (start, end]; stops counting at `limit` if given."""
    end = require_aware(end, "end")
    count = 0
    at: datetime | None = start
    while limit is None or count < limit:
        assert at is not None
        at = schedule.next_after(at)
        if at is None or at > end:
            break
        count += 1
    return count
