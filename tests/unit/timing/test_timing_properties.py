"""Properties of every schedule kind, in zones with and without DST (hypothesis)."""

from __future__ import annotations

import calendar as cal_mod
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from taskplan.model import Calendar, ScheduleSpec
from taskplan.timing import check_calendar, check_cron, compile_schedule, firings

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe"]
TICK = timedelta(microseconds=1)
T = TypeVar("T")

props = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1),
                        timezones=st.just(UTC))
walls = st.datetimes(min_value=datetime(2018, 1, 1), max_value=datetime(2031, 1, 1))

cron_exprs = st.builds(
    lambda *f: " ".join(f),
    st.sampled_from(["*", "*/15", "0", "30", "0,30", "5-10", "*/7", "59", "15,45"]),
    st.sampled_from(["*", "2", "1,2,3", "*/6", "0-23", "9-17", "1", "0", "23"]),
    st.sampled_from(["*", "1", "L", "15", "31", "29", "1-7"]),
    st.sampled_from(["*", "2", "1-6", "3,10", "11", "4,10"]),
    st.sampled_from(["*", "1-5", "0", "5", "SAT,SUN"]),
).filter(lambda e: check_cron(e) is None)

quarter_times = st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45]))


def few(elements: st.SearchStrategy[T]) -> st.SearchStrategy[tuple[T, ...]]:
    return st.lists(elements, max_size=3, unique=True).map(tuple)


calendars = st.builds(
    Calendar,
    at=few(quarter_times),
    minutes=few(st.sampled_from([0, 15, 30, 45, 59])),
    hours=few(st.integers(0, 23)),
    weekdays=few(st.integers(0, 6)),
    monthdays=st.lists(st.sampled_from([1, 2, 15, 28, 29, 30, 31, -1]), max_size=2,
                       unique=True).map(tuple),
    months=st.lists(st.integers(1, 12), max_size=4, unique=True).map(tuple),
).filter(lambda c: check_calendar(c) == [])

every_seconds = st.sampled_from([60.0, 900.0, 3600.0, 5400.0, 86400.0, 604800.0, 37.5])


@st.composite
def specs(draw: st.DrawFn) -> ScheduleSpec:
    kind = draw(st.sampled_from(["cron", "calendar", "every", "once"]))
    start = draw(st.none() | walls)
    bounds: dict[str, Any] = {
        "start": start,
        "end": draw(st.none() | walls),
        "max_runs": draw(st.none() | st.integers(0, 40)) if start is not None else None,
    }
    if kind == "cron":
        return ScheduleSpec(0, cron=draw(cron_exprs), **bounds)
    if kind == "calendar":
        return ScheduleSpec(0, calendar=draw(calendars), **bounds)
    if kind == "every":
        return ScheduleSpec(0, every=draw(every_seconds), **bounds)
    return ScheduleSpec(0, once=draw(walls), **bounds)


@st.composite
def exception_lists(draw: st.DrawFn, near: datetime) -> list[Calendar]:
    out = []
    for _ in range(draw(st.integers(0, 2))):
        form = draw(st.sampled_from(["dates", "weekdays", "timed"]))
        if form == "dates":
            offsets = draw(st.lists(st.integers(-1, 12), min_size=1, max_size=3))
            out.append(Calendar(dates=tuple(near.date() + timedelta(days=o) for o in offsets)))
        elif form == "weekdays":
            out.append(Calendar(weekdays=tuple(draw(st.lists(st.integers(0, 6), min_size=1,
                                                             max_size=3, unique=True)))))
        else:
            out.append(Calendar(weekdays=tuple(draw(st.lists(st.integers(0, 6), max_size=3))),
                                at=tuple(draw(st.lists(quarter_times, min_size=1, max_size=3)))))
    return out


def _excepted(c: Calendar, wall: datetime) -> bool:
    """An independent reading of the documented exception rule."""
    d = wall.date()
    last = cal_mod.monthrange(d.year, d.month)[1]
    if c.dates and d not in c.dates:
        return False
    if c.weekdays and d.weekday() not in c.weekdays:
        return False
    if c.months and d.month not in c.months:
        return False
    if c.monthdays and d.day not in c.monthdays and not (-1 in c.monthdays and d.day == last):
        return False
    return not c.at or wall.time() in c.at


def utc(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.astimezone(UTC)


@props
@given(spec=specs(), zone=st.sampled_from(ZONES), after=instants, data=st.data())
def test_firings_respect_every_rule(
    spec: ScheduleSpec, zone: str, after: datetime, data: st.DataObject
) -> None:
    tz = ZoneInfo(zone)
    exceptions = data.draw(exception_lists(after))
    sched = compile_schedule(spec, tz, exceptions)
    got = firings(sched, after, 12)
    real = [g.astimezone(UTC) for g in got]
    assert all(g.tzinfo is tz for g in got)
    assert all(a < b for a, b in pairwise([after, *real]))  # strictly after, strictly increasing
    for g in got:
        local = g.replace(tzinfo=None)
        assert not any(_excepted(c, local) for c in exceptions), (g, exceptions)
    if spec.start is not None:
        start = datetime.combine(spec.start.date(), spec.start.time(), tz).astimezone(UTC)
        assert all(r >= start for r in real)
    if spec.end is not None:
        end = datetime.combine(spec.end.date(), spec.end.time(), tz).astimezone(UTC)
        assert all(r <= end for r in real)
    if spec.max_runs is not None:
        every_one = firings(sched, datetime(1990, 1, 1, tzinfo=UTC), spec.max_runs + 1)
        assert len(every_one) <= spec.max_runs
        assert set(real) <= {utc(f) for f in every_one}
    # Asking from anywhere between two firings gives the later one: no state, no drift.
    # (In UTC: aware datetimes sharing a tzinfo compare and add as walls, blind to DST.)
    for a, b in pairwise(real):
        assert utc(sched.next_after(a + (b - a) / 2)) == b
        assert utc(sched.next_after(b - TICK)) == b


@props
@given(expr=cron_exprs, after=instants)
def test_cron_in_utc_matches_cronsim(expr: str, after: datetime) -> None:
    sched = compile_schedule(ScheduleSpec(0, cron=expr), ZoneInfo("UTC"))
    ours = [g.astimezone(UTC) for g in firings(sched, after, 10)]
    it = CronSim(expr, after)
    theirs = [next(it) for _ in range(len(ours))]
    assert ours == theirs


@props
@given(seconds=every_seconds, start=walls, zone=st.sampled_from(ZONES), after=instants)
def test_every_is_start_plus_k_intervals(
    seconds: float, start: datetime, zone: str, after: datetime
) -> None:
    tz = ZoneInfo(zone)
    sched = compile_schedule(ScheduleSpec(0, every=seconds, start=start), tz)
    got = [g.astimezone(UTC) for g in firings(sched, after, 8)]
    anchor = datetime.combine(start.date(), start.time(), tz).astimezone(UTC)
    step = timedelta(seconds=seconds)
    assert len(got) == 8
    assert all((g - anchor) % step == timedelta(0) for g in got)
    assert all(b - a == step for a, b in pairwise(got))
    assert got[0] > after  # and it is the first such multiple:
    assert got[0] == anchor or got[0] - step <= after


@props
@given(
    spec=st.one_of(st.builds(lambda e: ScheduleSpec(0, cron=e), cron_exprs),
                   st.builds(lambda c: ScheduleSpec(0, calendar=c), calendars)),
    zone=st.sampled_from(ZONES),
    after=instants,
)
def test_a_start_long_ago_changes_nothing(spec: ScheduleSpec, zone: str, after: datetime) -> None:
    tz = ZoneInfo(zone)
    old = ScheduleSpec(0, cron=spec.cron, calendar=spec.calendar, start=datetime(2010, 1, 1))
    expected = utc(compile_schedule(spec, tz).next_after(after))
    assert utc(compile_schedule(old, tz).next_after(after)) == expected


TRANSITIONS = [  # (zone, local day of a DST change)
    ("Europe/Paris", date(2026, 3, 29)), ("Europe/Paris", date(2026, 10, 25)),
    ("America/New_York", date(2026, 3, 8)), ("America/New_York", date(2026, 11, 1)),
    ("Australia/Lord_Howe", date(2026, 10, 4)), ("Australia/Lord_Howe", date(2026, 4, 5)),
]


def _brute_force(tz: ZoneInfo, day: date, hours: set[int], minutes: set[int]) -> list[datetime]:
    """The policy spelled out by enumeration, over the DST day (with a day either side)."""
    lo = datetime.combine(day - timedelta(days=1), time(), tz).astimezone(UTC)
    hi = datetime.combine(day + timedelta(days=2), time(), tz).astimezone(UTC)
    found: set[datetime] = set()
    if hours == set(range(24)):  # every-hour cadence: each real minute whose wall matches
        t = lo
        while t < hi:
            w = t.astimezone(tz)
            if w.minute in minutes:
                found.add(t)
            t += timedelta(minutes=1)
    else:  # wall clock: each listed wall once, read with fold=0 (gap shifted, first of two)
        w = datetime.combine(day - timedelta(days=1), time())
        while w < datetime.combine(day + timedelta(days=2), time()):
            if w.hour in hours and w.minute in minutes:
                found.add(w.replace(tzinfo=tz).astimezone(UTC))
            w += timedelta(minutes=1)
    mid_lo = datetime.combine(day, time(), tz).astimezone(UTC)
    mid_hi = datetime.combine(day + timedelta(days=1), time(), tz).astimezone(UTC)
    return sorted(f for f in found if mid_lo <= f < mid_hi)


@settings(max_examples=60, deadline=None)
@given(
    where=st.sampled_from(TRANSITIONS),
    hours=st.one_of(st.just(set(range(24))), st.sets(st.integers(0, 23), min_size=1, max_size=4)),
    minutes=st.sets(st.sampled_from([0, 1, 15, 29, 30, 31, 45, 59]), min_size=1, max_size=3),
    form=st.sampled_from(["cron", "calendar"]),
)
def test_dst_days_match_brute_force(
    where: tuple[str, date], hours: set[int], minutes: set[int], form: str
) -> None:
    zone, day = where
    tz = ZoneInfo(zone)
    hs, ms = sorted(hours), sorted(minutes)
    if form == "cron":
        hour_field = "*" if hours == set(range(24)) else ",".join(map(str, hs))
        spec = ScheduleSpec(0, cron=f"{','.join(map(str, ms))} {hour_field} * * *")
    else:
        spec = ScheduleSpec(0, calendar=Calendar(hours=tuple(hs), minutes=tuple(ms)))
    expected = _brute_force(tz, day, hours, minutes)
    assume(expected)
    sched = compile_schedule(spec, tz)
    start = datetime.combine(day, time(), tz).astimezone(UTC) - TICK
    got = [g.astimezone(UTC) for g in firings(sched, start, len(expected) + 1)]
    assert got[: len(expected)] == expected
    assert len(got) == len(expected) + 1 and got[-1] >= expected[-1]


cron_junk = st.lists(st.text(alphabet="0123456789*/-,LW#?MONFRISAJ ", min_size=1, max_size=6),
                     min_size=1, max_size=6).map(" ".join)


@settings(max_examples=300, deadline=None)
@given(expr=cron_junk)
def test_check_cron_answers_anything_and_what_it_accepts_compiles(expr: str) -> None:
    if check_cron(expr) is None:
        sched = compile_schedule(ScheduleSpec(0, cron=expr), ZoneInfo("Europe/Paris"))
        sched.next_after(datetime(2026, 3, 29, 0, 30, tzinfo=UTC))
    else:
        with pytest.raises(ValueError):
            compile_schedule(ScheduleSpec(0, cron=expr), ZoneInfo("UTC"))
