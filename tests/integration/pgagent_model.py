"""A line-by-line model of pgAgent's `pgagent.pga_next_schedule()` (pgagent.sql, version 4),
with switches that correct each of its known mistakes one at a time.

The firing comparison test checks that the model with no switch gives exactly what the real
function gives on the server, call after call; a difference between pgAgent and taskplan is then
explained by the switches that make the model agree with taskplan (docs/migrating.md).

Times: the function works on local wall times of the session's TimeZone (`timestamp`
variables); a wall is turned into an instant the way PostgreSQL reads a local time: a time in a
spring-forward gap with the offset from before the gap (so it lands after it), a time repeated
by a fall-back as its second occurrence (standard time).
"""

from __future__ import annotations

import calendar as _cal
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# What each switch corrects (the names docs/migrating.md uses).
ROLLOVER = "rollover"  # a new hour/day searches minutes from the previous minute, not from 0
LAST_DAY = "last_day"  # "last day" with other month days set never matches the last day
SHORT_MONTH = "short_month"  # day 29/30/31 in a month without it raises an error
EVERY_OTHER_MINUTE = "every_other_minute"  # nothing set (every minute) skips each next minute
FIXES = (ROLLOVER, LAST_DAY, SHORT_MONTH, EVERY_OTHER_MINUTE)

_MINUTE = timedelta(minutes=1)


class PgAgentError(Exception):
    """The real function raises here (e.g. "date/time field value out of range")."""


@dataclass(frozen=True)
class Sched:
    start: datetime  # aware
    end: datetime | None
    minutes: tuple[bool, ...]
    hours: tuple[bool, ...]
    weekdays: tuple[bool, ...]  # Sunday first
    monthdays: tuple[bool, ...]  # 32: the last is "last day"
    months: tuple[bool, ...]
    exceptions: tuple[tuple[date | None, time | None], ...] = ()


def pg_instant(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant PostgreSQL reads a local wall time as."""
    first = wall.replace(tzinfo=tz, fold=0)
    second = wall.replace(tzinfo=tz, fold=1)
    if first.utcoffset() == second.utcoffset():
        return first.astimezone(UTC)
    exists = first.astimezone(UTC).astimezone(tz).replace(tzinfo=None) == wall
    return (second if exists else first).astimezone(UTC)


def local(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _days_in(year: int, month: int) -> int:
    return _cal.monthrange(year, month)[1]


def next_schedule(s: Sched, after: datetime, tz: ZoneInfo,
                  fixes: Collection[str] = ()) -> datetime | None:
    """pga_next_schedule(id, greatest(jscstart, after + 1 minute), jscend, ...) for an `after`
    later than the server's now(); an instant (UTC) or None."""
    start = max(s.start, after + _MINUTE).replace(second=0, microsecond=0)
    runafter = local(start, tz)
    origin_year = runafter.year
    foundval = daytweak = minutetweak = False
    mins, hrs, wdays, mdays, mons = s.minutes, s.hours, s.weekdays, s.monthdays, s.months
    for _ in range(2_000_000):
        ra = runafter
        year, month = ra.year, ra.month
        got = False
        for i in range(month, 13):
            if mons[i - 1]:
                month, got, foundval = i, True, True
                break
        if not got:
            for i in range(1, month):
                if mons[i - 1]:
                    month, year, got, foundval = i, year + 1, True, True
                    break
        if year > ra.year or month > ra.month:
            day = 1
            for i in range(1, 33):
                if mdays[i - 1]:
                    day, foundval = i, True
                    break
        else:
            day, got = ra.day, False
            for i in range(day, 33):
                if mdays[i - 1]:
                    day, got, foundval = i, True, True
                    break
            if not got:
                for i in range(1, day):
                    if mdays[i - 1]:
                        day, got, foundval = i, True, True
                        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                        break
        if day == 32:
            day = _days_in(year, month)
        if year > ra.year or month > ra.month or day > ra.day or daytweak:
            hour = 0
            for i in range(1, 25):
                if hrs[i - 1]:
                    hour, foundval = i - 1, True
                    break
        else:
            hour, got = ra.hour, False
            for i in range(hour + 1, 25):
                if hrs[i - 1]:
                    hour, got, foundval = i - 1, True, True
                    break
            if not got:
                for i in range(1, hour + 1):
                    if hrs[i - 1]:
                        hour, got, foundval = i - 1, True, True
                        if day == _days_in(year, month):
                            day = 1
                            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                        else:
                            day += 1
                        break
        if (year > ra.year or month > ra.month or day > ra.day or hour > ra.hour
                or daytweak):
            minute = 0
            first = 1 if minutetweak or ROLLOVER in fixes else ra.minute
            for i in range(max(first, 1), 61):
                if mins[i - 1]:
                    minute, foundval = i - 1, True
                    break
        else:
            minute, got = ra.minute, False
            for i in range(minute + 1, 61):
                if mins[i - 1]:
                    minute, got, foundval = i - 1, True, True
                    break
            if not got:
                for i in range(1, minute + 1):
                    if mins[i - 1]:
                        minute, got, foundval = i - 1, True, True
                        if hour == 23:
                            hour = 0
                            if day == _days_in(year, month):
                                day = 1
                                year, month = (year + 1, 1) if month == 12 else (year, month + 1)
                            else:
                                day += 1
                        else:
                            hour += 1
                        break
        if year > 32767:
            raise PgAgentError("smallint out of range")
        if year > origin_year + 100 and fixes:
            return None  # a corrected search that finds nothing for a century: never
        try:
            wall = datetime(year, month, day, hour, minute)
        except ValueError:
            if SHORT_MONTH not in fixes:
                raise PgAgentError("date/time field value out of range") from None
            # Nothing that day: carry on from the first minute of the next month.
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            runafter, daytweak, minutetweak = datetime(year, month, 1), True, True
            continue
        nextrun = local(pg_instant(wall, tz), tz)  # '...'::timestamptz into a timestamp
        if nextrun == ra and not foundval and EVERY_OTHER_MINUTE not in fixes:
            nextrun += _MINUTE
        if s.end is not None and pg_instant(nextrun, tz) > s.end:
            return None
        if _valid(s, nextrun, fixes):
            if not any(wdays) or wdays[(nextrun.weekday() + 1) % 7]:
                if _excepted(s, nextrun):
                    runafter, minutetweak, daytweak = nextrun + _MINUTE, True, False
                else:
                    return pg_instant(nextrun, tz)
            else:
                runafter, minutetweak, daytweak = nextrun + timedelta(days=1), False, True
        else:
            runafter, minutetweak, daytweak = nextrun + _MINUTE, True, False
    raise PgAgentError("no firing found by the model")


def _valid(s: Sched, run: datetime, fixes: Collection[str]) -> bool:
    last = run.day == _days_in(run.year, run.month)
    mdays = s.monthdays
    day_ok = (not any(mdays) or mdays[run.day - 1]
              or (mdays[31] and last and (LAST_DAY in fixes or not any(mdays[:31]))))
    return ((not any(s.minutes) or s.minutes[run.minute])
            and (not any(s.hours) or s.hours[run.hour])
            and day_ok
            and (not any(s.months) or s.months[run.month - 1]))


def _excepted(s: Sched, run: datetime) -> bool:
    d, t = run.date(), run.time()
    return any((ed == d and et == t) or (ed == d and et is None) or (ed is None and et == t)
               for ed, et in s.exceptions)


def dst_days(tz: ZoneInfo, first: date, last: date) -> set[date]:
    """Local days on which the zone's UTC offset changes."""
    out = set()
    day = first
    while day <= last:
        a = datetime.combine(day, time(0), tz).utcoffset()
        b = datetime.combine(day + timedelta(days=1), time(0), tz).utcoffset()
        if a != b:
            out.add(day)
        day += timedelta(days=1)
    return out

