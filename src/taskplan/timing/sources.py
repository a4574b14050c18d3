"""The raw firings of each schedule kind, before start/end, max_runs and exceptions.

A source answers one question: the first firing strictly after a UTC instant, as
(instant in UTC, the wall time it was listed as, or None for `every`, which lists no walls).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from taskplan.model import ScheduleSpec
from taskplan.timing.business import BusinessDayWalls, ClosedDays, ShiftedWalls, resolve
from taskplan.timing.calendar import CalendarWalls
from taskplan.timing.cron import CronWalls
from taskplan.timing.walls import next_from_walls
from taskplan.timing.zones import spec_instant, wall_of

Hit = tuple[datetime, datetime | None]

# `every` without `start` counts from local midnight, 1 January 1970, so that intervals that
# divide a day land on round local times (at the zone's 1970 offset).
EVERY_EPOCH = datetime(1970, 1, 1)


class Source(Protocol):
    def next_after(self, after: datetime) -> Hit | None: ...

    def may_fire_on(self, day: date) -> bool:
        """False only if no firing can fall on this local day (a cheap pre-filter)."""
        ...


Walls = CronWalls | CalendarWalls | ShiftedWalls | BusinessDayWalls


class WallSource:
    def __init__(self, walls: Walls, tz: ZoneInfo) -> None:
        self.walls = walls
        self.tz = tz

    def next_after(self, after: datetime) -> Hit | None:
        return next_from_walls(self.walls.next_wall, self.tz, after, self.walls.every_hour)

    def may_fire_on(self, day: date) -> bool:
        if self.walls.day_matches(day):
            return True
        # A wall of the day before, shifted by a gap, can land on this day; only possible when
        # the offset changes around midnight, so that is all that is checked.
        if day in (date.min, date.max) or not self.walls.day_matches(day - timedelta(days=1)):
            return False
        before = datetime.combine(day - timedelta(days=1), time(), self.tz).utcoffset()
        after = datetime.combine(day + timedelta(days=1), time(), self.tz).utcoffset()
        return before != after


class EverySource:
    """A fixed interval in absolute time: anchor + k * step, k >= 0, whatever DST does."""

    def __init__(self, seconds: float, anchor: datetime) -> None:
        # Whole microseconds keep `anchor + k * step` exact however large k grows.
        self.step = timedelta(microseconds=round(seconds * 1_000_000))
        if self.step <= timedelta(0):
            raise ValueError(f"`every` must be at least one microsecond, got {seconds!r} s")
        self.anchor = anchor

    def may_fire_on(self, day: date) -> bool:
        return True

    def nth(self, k: int) -> datetime:
        return self.anchor + k * self.step

    def next_after(self, after: datetime) -> Hit | None:
        if after < self.anchor:
            return self.anchor, None
        k = (after - self.anchor) // self.step + 1
        try:
            return self.nth(k), None
        except OverflowError:
            return None


class OnceSource:
    def __init__(self, when: datetime, tz: ZoneInfo) -> None:
        self.instant = spec_instant(when, tz)
        self.wall = when if when.tzinfo is None else wall_of(self.instant, tz)

    def next_after(self, after: datetime) -> Hit | None:
        return (self.instant, self.wall) if self.instant > after else None

    def may_fire_on(self, day: date) -> bool:
        return True


class BusinessDaysOnly:
    """An `every` or `once` source bound to a business calendar: firings on closed local days
    are dropped (those kinds list no walls to move)."""

    def __init__(self, inner: Source, closed: ClosedDays, tz: ZoneInfo) -> None:
        self.inner = inner
        self.closed = closed
        self.tz = tz

    def may_fire_on(self, day: date) -> bool:
        return self.closed.is_open(day) and self.inner.may_fire_on(day)

    def next_after(self, after: datetime) -> Hit | None:
        hit = self.inner.next_after(after)
        while hit is not None and not self.closed.is_open(wall_of(hit[0], self.tz).date()):
            day = wall_of(hit[0], self.tz).date()
            # Jump to the end of the closed day rather than firing by firing through it.
            midnight = datetime.combine(day + timedelta(days=1), time(), self.tz)
            hit = self.inner.next_after(max(hit[0], midnight - timedelta(microseconds=1)))
        return hit


def make_source(spec: ScheduleSpec, tz: ZoneInfo,
                calendars: Mapping[str, ClosedDays] | None = None) -> Source:
    closed = (None if spec.business_calendar is None
              else resolve(spec.business_calendar, calendars))
    walls: Walls | None = None
    if spec.cron is not None:
        walls = CronWalls(spec.cron)
    elif spec.calendar is not None and spec.business_day is not None:
        assert closed is not None
        walls = BusinessDayWalls(spec.calendar, spec.business_day, closed)
    elif spec.calendar is not None:
        walls = CalendarWalls(spec.calendar)
    if walls is not None:
        if closed is not None and not isinstance(walls, BusinessDayWalls):
            walls = ShiftedWalls(walls, closed, spec.shift)
        return WallSource(walls, tz)
    source: Source
    if spec.every is not None:
        anchor = spec.start if spec.start is not None else EVERY_EPOCH
        source = EverySource(spec.every, spec_instant(anchor, tz))
    elif spec.once is not None:
        source = OnceSource(spec.once, tz)
    else:
        raise ValueError(f"schedule {spec.key} has none of cron, calendar, every, once")
    return source if closed is None else BusinessDaysOnly(source, closed, tz)
