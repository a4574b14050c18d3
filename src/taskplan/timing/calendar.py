"""The pgAgent calendar form (`model.Calendar`): as a schedule and as an exception.

Days: `weekdays` (0 = Monday), `monthdays` (1..31, -1 = the last day) and `months` each restrict
the day when given, and all given ones must hold (pgAgent's rule, unlike cron's either-or). A
month day the month does not have (31 in April, 30 in February) matches nothing; -1 is the way to
say "last day".

Times of a matching day: the `at` times, plus every `hours` x `minutes` combination; `hours`
alone means minute 0, `minutes` alone means every hour. With none of them the day fires at
00:00. Times that cover all 24 hours make an every-hour cadence (see `walls`).

As an exception (docs/schedules.md), the same fields select what to suppress: `dates` and the day
filters select local days; without `at`/`hours`/`minutes` the whole day is suppressed, with them
only firings at exactly those local times.
"""

from __future__ import annotations

import calendar as _cal
from datetime import date, datetime, time, timedelta
from typing import Protocol

from taskplan.model import Calendar

# A day filter that matches at all does so within a few decades (29 February on a given weekday
# recurs every 28 years); past this the matcher reports "never".
_MAX_YEARS = 60


def check_calendar(cal: Calendar, *, exception: bool = False) -> list[str]:
    """What is wrong with a calendar schedule (or exception, if `exception`); empty if nothing."""
    problems: list[str] = []
    for t in cal.at:
        if t.second or t.microsecond:
            problems.append(f"`at` time {t.isoformat()} must be whole minutes")
    problems += [f"minute {m} is not in 0..59" for m in cal.minutes if not 0 <= m <= 59]
    problems += [f"hour {h} is not in 0..23" for h in cal.hours if not 0 <= h <= 23]
    problems += [f"weekday {d} is not in 0..6" for d in cal.weekdays if not 0 <= d <= 6]
    problems += [
        f"month day {d} is not in 1..31 or last"
        for d in cal.monthdays
        if not (1 <= d <= 31 or d == -1)
    ]
    problems += [f"month {m} is not in 1..12" for m in cal.months if not 1 <= m <= 12]
    if cal.dates and not exception:
        problems.append("`dates` is only allowed in exceptions")
    if problems:
        return problems
    if exception and cal.closed_on is not None:
        if cal != Calendar(closed_on=cal.closed_on):
            problems.append("a calendar: exception takes no other keys")
        return problems
    if exception and cal == Calendar():
        problems.append("an empty exception would suppress every firing")
    elif not DayFilter(cal).ever_matches():
        problems.append("these weekdays, month days and months never fall on a real day")
    return problems


class DayFilter:
    """Which local days a calendar selects (ignoring `dates`, which only exceptions use)."""

    def __init__(self, cal: Calendar) -> None:
        self.weekdays = frozenset(cal.weekdays)
        self.monthdays = frozenset(cal.monthdays)
        self.months = frozenset(cal.months)

    def matches(self, day: date) -> bool:
        if self.months and day.month not in self.months:
            return False
        if self.weekdays and day.weekday() not in self.weekdays:
            return False
        if not self.monthdays:
            return True
        if day.day in self.monthdays:
            return True
        return -1 in self.monthdays and day.day == _cal.monthrange(day.year, day.month)[1]

    def days_in_month(self, year: int, month: int, first: int = 1) -> list[int]:
        """The matching days of a month, from day `first` on, in order."""
        if self.months and month not in self.months:
            return []
        last = _cal.monthrange(year, month)[1]
        if self.monthdays:
            wanted = {last if d == -1 else d for d in self.monthdays if d <= last}
            candidates = sorted(d for d in wanted if d >= first)
        else:
            candidates = list(range(first, last + 1))
        if not self.weekdays:
            return candidates
        return [d for d in candidates if date(year, month, d).weekday() in self.weekdays]

    def next_day(self, day: date) -> date | None:
        """The first matching day on or after `day`; None if none within _MAX_YEARS."""
        year, month, first = day.year, day.month, day.day
        for _ in range(12 * _MAX_YEARS):
            days = self.days_in_month(year, month, first)
            if days:
                return date(year, month, days[0])
            year, month, first = (year + 1, 1, 1) if month == 12 else (year, month + 1, 1)
            if year > 9999:
                return None
        return None

    def ever_matches(self) -> bool:
        return self.next_day(date(2000, 1, 1)) is not None


def day_times(cal: Calendar) -> tuple[time, ...]:
    """The sorted times of day a calendar schedule fires at on each matching day."""
    times = set(cal.at)
    if cal.hours or cal.minutes:
        hours = cal.hours or tuple(range(24))
        minutes = cal.minutes or (0,)
        times.update(time(h, m) for h in hours for m in minutes)
    if not times:
        times.add(time(0, 0))
    return tuple(sorted(times))


class CalendarWalls:
    """The wall times a calendar schedule matches."""

    def __init__(self, cal: Calendar) -> None:
        problems = check_calendar(cal)
        if problems:
            raise ValueError("; ".join(problems))
        self.days = DayFilter(cal)
        self.times = day_times(cal)
        self.every_hour = {t.hour for t in self.times} == set(range(24))

    def day_matches(self, day: date) -> bool:
        return self.days.matches(day)

    def next_wall(self, wall: datetime) -> datetime | None:
        today = wall.date()
        if self.days.matches(today):
            now = wall.time()
            for t in self.times:
                if t > now:
                    return datetime.combine(today, t)
        if today == date.max:
            return None
        day = self.days.next_day(today + timedelta(days=1))
        return None if day is None else datetime.combine(day, self.times[0])


class ClosedDayTest(Protocol):
    def is_open(self, day: date) -> bool: ...


class ExceptionRule:
    """One exception, tested against a local wall time. `closed` is the named business
    calendar of a `calendar:` exception, whose closed days are suppressed whole."""

    def __init__(self, cal: Calendar, closed: ClosedDayTest | None = None) -> None:
        self.closed = closed
        self.dates = frozenset(cal.dates)
        self.days = DayFilter(cal)
        self.has_day_filter = bool(cal.weekdays or cal.monthdays or cal.months)
        self.times = frozenset(day_times(cal)) if (cal.at or cal.hours or cal.minutes) else None

    @property
    def whole_day(self) -> bool:
        return self.times is None

    def matches_day(self, day: date) -> bool:
        if self.closed is not None and self.closed.is_open(day):
            return False
        if self.dates and day not in self.dates:
            return False
        return not self.has_day_filter or self.days.matches(day)

    def matches(self, wall: datetime) -> bool:
        if not self.matches_day(wall.date()):
            return False
        if self.times is None:
            return True
        return wall.second == 0 and wall.microsecond == 0 and wall.time() in self.times
