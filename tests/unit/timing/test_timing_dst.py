"""Every DST case of docs/schedules.md, in three zones, with the UTC offsets spelled out.

2026 transitions used:
  Europe/Paris        spring 03-29 02:00 -> 03:00 (+01 -> +02)  fall 10-25 03:00 -> 02:00
  America/New_York    spring 03-08 02:00 -> 03:00 (-05 -> -04)  fall 11-01 02:00 -> 01:00
  Australia/Lord_Howe spring 10-04 02:00 -> 02:30 (+10:30 -> +11) fall 04-05 02:00 -> 01:30
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from taskplan.model import Calendar, ScheduleSpec
from taskplan.timing import compile_schedule, firings


@dataclass(frozen=True)
class Zone:
    name: str
    spring: datetime  # the spring-forward day
    gap_time: time  # a wall time inside its gap
    shifted: str  # where that time fires, ISO with offset
    before: str  # offset in force before spring-forward (and after fall-back)
    after: str  # offset in force after spring-forward (and before fall-back)
    fall: datetime  # the fall-back day
    repeated: time  # a wall time that occurs twice that day

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.name)


ZONES = [
    Zone("Europe/Paris", datetime(2026, 3, 29), time(2, 30), "2026-03-29T03:30:00+02:00",
         "+01:00", "+02:00", datetime(2026, 10, 25), time(2, 30)),
    Zone("America/New_York", datetime(2026, 3, 8), time(2, 30), "2026-03-08T03:30:00-04:00",
         "-05:00", "-04:00", datetime(2026, 11, 1), time(1, 30)),
    Zone("Australia/Lord_Howe", datetime(2026, 10, 4), time(2, 15), "2026-10-04T02:45:00+11:00",
         "+10:30", "+11:00", datetime(2026, 4, 5), time(1, 45)),
]
ids = [z.name for z in ZONES]


def iso(dts: list[datetime]) -> list[str]:
    return [d.isoformat() for d in dts]


def real_steps(dts: list[datetime]) -> list[timedelta]:
    # Aware datetimes sharing a tzinfo subtract as walls; UTC gives elapsed time.
    utc = [d.astimezone(UTC) for d in dts]
    return [b - a for a, b in pairwise(utc)]


def local(zone: Zone, day: datetime, t: time, offset: str) -> str:
    return f"{datetime.combine(day.date(), t).isoformat()}{offset}"


def start_of(zone: Zone, day: datetime) -> datetime:
    """An instant well before `day` starts locally."""
    return (day - timedelta(days=1)).replace(tzinfo=zone.tz)


def daily_cron(t: time) -> str:
    return f"{t.minute} {t.hour} * * *"


def daily_kinds(t: time) -> list[ScheduleSpec]:
    return [ScheduleSpec(0, cron=daily_cron(t)), ScheduleSpec(0, calendar=Calendar(at=(t,)))]


@pytest.mark.parametrize("zone", ZONES, ids=ids)
@pytest.mark.parametrize("kind", ["cron", "calendar"])
def test_daily_time_in_the_gap_fires_once_shifted_by_the_gap(zone: Zone, kind: str) -> None:
    spec = daily_kinds(zone.gap_time)[kind == "calendar"]
    got = firings(compile_schedule(spec, zone.tz), start_of(zone, zone.spring), 3)
    day_before = zone.spring - timedelta(days=1)
    day_after = zone.spring + timedelta(days=1)
    assert iso(got) == [
        local(zone, day_before, zone.gap_time, zone.before),
        zone.shifted,
        local(zone, day_after, zone.gap_time, zone.after),
    ]


@pytest.mark.parametrize("zone", ZONES, ids=ids)
@pytest.mark.parametrize("kind", ["cron", "calendar"])
def test_daily_repeated_time_fires_once_at_first_occurrence(zone: Zone, kind: str) -> None:
    spec = daily_kinds(zone.repeated)[kind == "calendar"]
    got = firings(compile_schedule(spec, zone.tz), start_of(zone, zone.fall), 3)
    assert iso(got) == [
        local(zone, zone.fall - timedelta(days=1), zone.repeated, zone.after),
        local(zone, zone.fall, zone.repeated, zone.after),  # first occurrence: summer offset
        local(zone, zone.fall + timedelta(days=1), zone.repeated, zone.before),
    ]


@pytest.mark.parametrize("zone", ZONES, ids=ids)
def test_asking_from_inside_the_repeated_hour_does_not_fire_again(zone: Zone) -> None:
    sched = compile_schedule(ScheduleSpec(0, cron=daily_cron(zone.repeated)), zone.tz)
    first = datetime.combine(zone.fall.date(), zone.repeated, zone.tz)  # fold=0
    second = first.replace(fold=1)
    assert second.astimezone(UTC) > first.astimezone(UTC)
    nxt = sched.next_after(first)
    assert nxt is not None
    assert nxt.date() == (zone.fall + timedelta(days=1)).date()
    assert sched.next_after(second) == nxt
    assert sched.next_after(first - timedelta(seconds=1)) == first


@pytest.mark.parametrize("zone", ZONES, ids=ids)
def test_daily_midday_keeps_its_wall_time_across_both_changes(zone: Zone) -> None:
    sched = compile_schedule(ScheduleSpec(0, calendar=Calendar(at=(time(12, 0),))), zone.tz)
    for day, old, new in ((zone.spring, zone.before, zone.after),
                          (zone.fall, zone.after, zone.before)):
        got = firings(sched, start_of(zone, day), 2)
        assert iso(got) == [local(zone, day - timedelta(days=1), time(12), old),
                            local(zone, day, time(12), new)]


@pytest.mark.parametrize("zone", ZONES, ids=ids)
@pytest.mark.parametrize("day_attr", ["spring", "fall"])
def test_every_hour_is_absolute_time(zone: Zone, day_attr: str) -> None:
    day: datetime = getattr(zone, day_attr)
    start = day.replace(hour=0)
    sched = compile_schedule(ScheduleSpec(0, every=3600.0, start=start), zone.tz)
    got = firings(sched, datetime(2000, 1, 1, tzinfo=UTC), 6)
    first = start.replace(tzinfo=zone.tz)
    assert got[0] == first
    assert real_steps(got) == [timedelta(hours=1)] * 5
    offsets = {g.strftime("%z") for g in got}
    assert len(offsets) == 2  # the change happens inside these six hours


def test_every_hour_across_lord_howe_half_hour_fall_back() -> None:
    tz = ZoneInfo("Australia/Lord_Howe")
    sched = compile_schedule(ScheduleSpec(0, every=3600.0, start=datetime(2026, 4, 5)), tz)
    got = firings(sched, datetime(2026, 4, 1, tzinfo=UTC), 4)
    assert iso(got) == [
        "2026-04-05T00:00:00+11:00",
        "2026-04-05T01:00:00+11:00",
        "2026-04-05T01:30:00+10:30",
        "2026-04-05T02:30:00+10:30",
    ]


# A half-hour shift cannot keep :00 an hour apart: Lord Howe's @hourly has its own test.
CADENCES = [
    pytest.param(zone, expr, id=f"{zone.name}-{expr}")
    for zone in ZONES
    for expr in ("*/30 * * * *", "*/15 * * * *", "@hourly")
    if not (expr == "@hourly" and zone.name == "Australia/Lord_Howe")
]


@pytest.mark.parametrize(("zone", "expr"), CADENCES)
@pytest.mark.parametrize("day_attr", ["spring", "fall"])
def test_every_hour_cron_follows_real_time(zone: Zone, day_attr: str, expr: str) -> None:
    day: datetime = getattr(zone, day_attr)
    sched = compile_schedule(ScheduleSpec(0, cron=expr), zone.tz)
    got = firings(sched, start_of(zone, day) + timedelta(hours=20), 6 * 24 * 4)
    # An even cadence in real time, straight through the change.
    assert len(set(real_steps(got))) == 1
    assert {g.strftime("%z") for g in got} == {zone.before.replace(":", ""),
                                               zone.after.replace(":", "")}


def test_hourly_cron_across_lord_howe_half_hour_changes() -> None:
    tz = ZoneInfo("Australia/Lord_Howe")
    sched = compile_schedule(ScheduleSpec(0, cron="@hourly"), tz)
    fall = firings(sched, datetime(2026, 4, 5, 0, 30, tzinfo=tz), 3)
    assert iso(fall) == [  # 01:00 is not repeated (only 01:30-01:59 is)
        "2026-04-05T01:00:00+11:00",
        "2026-04-05T02:00:00+10:30",
        "2026-04-05T03:00:00+10:30",
    ]
    assert real_steps(fall) == [timedelta(hours=1, minutes=30), timedelta(hours=1)]
    spring = firings(sched, datetime(2026, 10, 4, 0, 30, tzinfo=tz), 3)
    assert iso(spring) == [
        "2026-10-04T01:00:00+10:30",
        "2026-10-04T03:00:00+11:00",  # 02:00 does not exist; 02:30 is not on the hour
        "2026-10-04T04:00:00+11:00",
    ]


def test_half_hourly_cron_fires_in_both_copies_of_the_repeated_hour_in_paris() -> None:
    tz = ZoneInfo("Europe/Paris")
    sched = compile_schedule(ScheduleSpec(0, cron="*/30 * * * *"), tz)
    got = firings(sched, datetime(2026, 10, 25, 1, 20, tzinfo=tz), 6)
    assert iso(got) == [
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T02:00:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T03:00:00+01:00",
    ]


def test_half_hourly_cron_has_nothing_in_the_gap_in_paris() -> None:
    tz = ZoneInfo("Europe/Paris")
    sched = compile_schedule(ScheduleSpec(0, cron="*/30 * * * *"), tz)
    got = firings(sched, datetime(2026, 3, 29, 1, 20, tzinfo=tz), 3)
    assert iso(got) == [
        "2026-03-29T01:30:00+01:00",
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
    ]


def test_cron_listing_hours_is_wall_clock_in_the_repeated_hour() -> None:
    tz = ZoneInfo("America/New_York")
    sched = compile_schedule(ScheduleSpec(0, cron="*/30 1 * * *"), tz)
    got = firings(sched, datetime(2026, 11, 1, tzinfo=tz), 3)
    assert iso(got) == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:00:00-05:00",
    ]


def test_gap_times_landing_on_listed_times_fire_once() -> None:
    # 02:00 and 02:15 are shifted onto 02:30 and 02:45, which are listed too.
    tz = ZoneInfo("Australia/Lord_Howe")
    sched = compile_schedule(ScheduleSpec(0, cron="*/15 2 * * *"), tz)
    got = firings(sched, datetime(2026, 10, 4, tzinfo=tz), 3)
    assert iso(got) == [
        "2026-10-04T02:30:00+11:00",
        "2026-10-04T02:45:00+11:00",
        "2026-10-05T02:00:00+11:00",
    ]


def test_gap_time_shifted_past_a_later_listed_time_keeps_order() -> None:
    # 02:30 is shifted to 03:30, after the listed 03:00: firings still come out in time order.
    tz = ZoneInfo("Europe/Paris")
    sched = compile_schedule(ScheduleSpec(0, calendar=Calendar(at=(time(2, 30), time(3, 0)))), tz)
    got = firings(sched, datetime(2026, 3, 29, tzinfo=tz), 3)
    assert iso(got) == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-29T03:30:00+02:00",
        "2026-03-30T02:30:00+02:00",
    ]


def test_once_and_start_in_the_gap_are_shifted() -> None:
    tz = ZoneInfo("Europe/Paris")
    once = compile_schedule(ScheduleSpec(0, once=datetime(2026, 3, 29, 2, 30)), tz)
    assert iso(firings(once, datetime(2026, 1, 1, tzinfo=UTC), 5)) == ["2026-03-29T03:30:00+02:00"]
    started = compile_schedule(
        ScheduleSpec(0, cron="0 * * * *", start=datetime(2026, 3, 29, 2, 30)), tz
    )
    assert iso(firings(started, datetime(2026, 1, 1, tzinfo=UTC), 1)) == [
        "2026-03-29T04:00:00+02:00"
    ]
