"""Business calendars: which local days are closed (weekends, public holidays, listed dates),
and the schedule walls that follow them.

A day is *closed* when it is a weekend day of the calendar, one of its listed `dates`, or a
public holiday of one of its holiday sources (the `holidays` package, by country and
subdivision); every other day is a *business day*. Days are local days of the zone of the
schedule that uses the calendar.

Walls built here behave like `CronWalls` and `CalendarWalls` (`day_matches`, `next_wall`,
`every_hour`), so `WallSource` handles their DST cases the same way:

* `ShiftedWalls` wraps a cron or calendar form: firings on business days stand; a firing on a
  closed day is dropped (`skip`), moved to the next business day (`next`) or to the previous
  one (`previous`), at the same local time. Two firings moved onto one day fire once.
* `BusinessDayWalls` fires on the Nth business day of each month (negative N counts from the
  month's end) at the form's times.

Both rely on one property of the cron and calendar forms: a matching day fires at the same
times of day whatever the day (the hour and minute fields do not depend on the day).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from typing import Any, Protocol

from taskplan.model import BusinessCalendar, Calendar, HolidaySource, Shift
from taskplan.timing.calendar import DayFilter, day_times

# Longest run of consecutive closed days a shift looks across (a calendar closing more days in
# a row than this drops the firings it would move).
MAX_CLOSED_RUN = 31
# How far ahead the Nth business day is searched before calling the schedule exhausted.
_MAX_YEARS = 60

WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Walls(Protocol):
    every_hour: bool

    def day_matches(self, day: date) -> bool: ...

    def next_wall(self, wall: datetime) -> datetime | None: ...


@lru_cache(maxsize=256)
def _holiday_names(source: HolidaySource, year: int) -> dict[date, str]:
    import holidays  # imported on first use: most commands never need it

    table = holidays.country_holidays(source.country, subdiv=source.subdiv, years=year)
    return {day: str(name) for day, name in table.items()}


def check_holiday_source(source: HolidaySource) -> str | None:
    """Why the `holidays` package cannot give holidays for this source, or None."""
    import holidays

    try:
        holidays.country_holidays(source.country, years=2026)
    except NotImplementedError:
        return f"unknown country code {source.country!r} (expected an ISO 3166 code such as GB)"
    if source.subdiv is None:
        return None
    try:
        holidays.country_holidays(source.country, subdiv=source.subdiv, years=2026)
    except NotImplementedError:
        known = holidays.list_supported_countries().get(source.country, [])
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        return (f"unknown subdivision {source.subdiv!r} of {source.country}"
                f" (expected one of {shown or 'none: this country has no subdivisions'})")
    return None


class ClosedDays:
    """The closed days of one business calendar, with the reason each is closed."""

    def __init__(self, cal: BusinessCalendar) -> None:
        self.name = cal.name
        self.weekends = frozenset(cal.weekends)
        self.dates = frozenset(cal.dates)
        self.sources = cal.holidays

    def reason(self, day: date) -> str | None:
        """Why `day` is closed ("Christmas Day (GB)", "weekend", "closed date"), or None."""
        for source in self.sources:
            name = _holiday_names(source, day.year).get(day)
            if name is not None:
                return f"{name} ({source.country})"
        if day in self.dates:
            return f"closed date of calendar {self.name}"
        if day.weekday() in self.weekends:
            return f"weekend ({WEEKDAY_NAMES[day.weekday()]})"
        return None

    def is_open(self, day: date) -> bool:
        return self.reason(day) is None

    def business_days(self, year: int, month: int) -> list[int]:
        """The business days of a month, in order."""
        return _business_days(self, year, month)


@lru_cache(maxsize=4096)
def _business_days(closed: ClosedDays, year: int, month: int) -> list[int]:
    first = date(year, month, 1)
    days = []
    day = first
    while day.month == month:
        if closed.is_open(day):
            days.append(day.day)
        day += timedelta(days=1)
    return days


def times_on(walls: Walls, day: date) -> list[time]:
    """Every time of day `walls` fires at on a matching `day`."""
    out: list[time] = []
    wall: datetime | None = datetime.combine(day, time()) - timedelta(microseconds=1)
    while True:
        wall = walls.next_wall(wall) if wall is not None else None
        if wall is None or wall.date() != day:
            return out
        out.append(wall.time())


_DAYS_KEPT = 8  # days whose times a ShiftedWalls keeps


class ShiftedWalls:
    """A cron or calendar form restricted to a calendar's business days (see module doc)."""

    def __init__(self, inner: Walls, closed: ClosedDays, shift: Shift) -> None:
        self.inner = inner
        self.closed = closed
        self.shift = shift
        self.every_hour = inner.every_hour
        # The times of the last few days asked for: a schedule with many times a day (every
        # minute: 1,440) rebuilt them at each next_wall, some 40 ms a firing.
        self._times: dict[date, list[time]] = {}

    def _source_days(self, day: date) -> list[date]:
        """The days of the inner form whose firings land on `day` after shifting."""
        if not self.closed.is_open(day):
            return []
        found = [day] if self.inner.day_matches(day) else []
        if self.shift is Shift.SKIP:
            return found
        step = timedelta(days=-1 if self.shift is Shift.NEXT else 1)
        other = day
        for _ in range(MAX_CLOSED_RUN):
            try:
                other += step
            except OverflowError:
                break
            if self.closed.is_open(other):
                break
            if self.inner.day_matches(other):
                found.append(other)
        return found

    def day_matches(self, day: date) -> bool:
        return bool(self._source_days(day))

    def _day_times(self, day: date) -> list[time]:
        found = self._times.get(day)
        if found is None:
            times: set[time] = set()
            for source in self._source_days(day):
                times.update(times_on(self.inner, source))
            found = sorted(times)
            if len(self._times) >= _DAYS_KEPT:
                self._times.clear()
            self._times[day] = found
        return found

    def next_wall(self, wall: datetime) -> datetime | None:
        return _next_on_days(wall, self.day_matches, self._day_times)


class BusinessDayWalls:
    """The Nth business day of each month (optionally only some `months`), at the times of a
    calendar form (`at`, `hours`, `minutes`; 00:00 without them)."""

    def __init__(self, form: Calendar, n: int, closed: ClosedDays) -> None:
        if n == 0 or abs(n) > 23:
            raise ValueError(f"business_day must be 1..23 or -1..-23, got {n}")
        self.n = n
        self.closed = closed
        self.months = DayFilter(Calendar(months=form.months))
        self.times = list(day_times(form))
        self.every_hour = {t.hour for t in self.times} == set(range(24))

    def day_matches(self, day: date) -> bool:
        if not self.months.matches(day):
            return False
        days = self.closed.business_days(day.year, day.month)
        if len(days) < abs(self.n):
            return False
        return days[self.n - 1 if self.n > 0 else self.n] == day.day

    def next_wall(self, wall: datetime) -> datetime | None:
        return _next_on_days(wall, self.day_matches, lambda _day: self.times,
                             horizon_days=366 * _MAX_YEARS)


def _next_on_days(wall: datetime, matches: Callable[[date], bool],
                  times: Callable[[date], list[time]], horizon_days: int = 366 * 10
                  ) -> datetime | None:
    """The first wall after `wall` on a matching day at one of that day's times (sorted)."""
    day = wall.date()
    for step in range(horizon_days):
        if step:
            if day == date.max:
                return None
            day += timedelta(days=1)
        if not matches(day):
            continue
        on_day = times(day)
        # On the day of `wall`, the first time after it; on a later day, its first time.
        i = bisect.bisect_right(on_day, wall.time()) if step == 0 else 0
        if i < len(on_day):
            return datetime.combine(day, on_day[i])
    return None


def resolve(name: str, calendars: Mapping[str, ClosedDays] | None) -> ClosedDays:
    if calendars is None or name not in calendars:
        raise ValueError(f"unknown calendar {name!r} (apply its file first)")
    return calendars[name]


def closed_days_of(defs: Mapping[str, BusinessCalendar]) -> dict[str, ClosedDays]:
    return {name: ClosedDays(cal) for name, cal in defs.items()}


def describe(cal: BusinessCalendar) -> dict[str, Any]:
    """A plain summary for listings."""
    return {
        "name": cal.name,
        "holidays": [f"{s.country}-{s.subdiv}" if s.subdiv else s.country for s in cal.holidays],
        "dates": len(cal.dates),
        "weekends": [WEEKDAY_NAMES[d] for d in sorted(cal.weekends)],
    }
