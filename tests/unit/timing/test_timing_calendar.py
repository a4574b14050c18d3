"""Calendar and cron forms: month ends, leap days, the calendar's field rules, validation."""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from taskplan.model import Calendar, ScheduleSpec
from taskplan.timing import check_calendar, check_cron, compile_schedule, firings

UTC_ZONE = ZoneInfo("UTC")


def days(spec: ScheduleSpec, after: datetime, n: int) -> list[date]:
    return [f.date() for f in firings(compile_schedule(spec, UTC_ZONE), after, n)]


JAN_2026 = datetime(2025, 12, 31, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "spec",
    [ScheduleSpec(0, calendar=Calendar(monthdays=(31,))), ScheduleSpec(0, cron="0 0 31 * *")],
    ids=["calendar", "cron"],
)
def test_day_31_skips_short_months(spec: ScheduleSpec) -> None:
    assert days(spec, JAN_2026, 7) == [
        date(2026, 1, 31), date(2026, 3, 31), date(2026, 5, 31), date(2026, 7, 31),
        date(2026, 8, 31), date(2026, 10, 31), date(2026, 12, 31),
    ]


@pytest.mark.parametrize(
    "spec",
    [ScheduleSpec(0, calendar=Calendar(monthdays=(-1,))), ScheduleSpec(0, cron="0 0 L * *")],
    ids=["calendar", "cron"],
)
@pytest.mark.parametrize(("year", "february"), [(2024, 29), (2026, 28), (2100, 28), (2000, 29)])
def test_last_day_of_month(spec: ScheduleSpec, year: int, february: int) -> None:
    got = days(spec, datetime(year - 1, 12, 31, 12, tzinfo=UTC), 4)
    assert got == [date(year, 1, 31), date(year, 2, february), date(year, 3, 31),
                   date(year, 4, 30)]


@pytest.mark.parametrize(
    "spec",
    [ScheduleSpec(0, calendar=Calendar(monthdays=(29,), months=(2,))),
     ScheduleSpec(0, cron="0 0 29 2 *")],
    ids=["calendar", "cron"],
)
def test_29_february_only_in_leap_years(spec: ScheduleSpec) -> None:
    assert days(spec, datetime(2090, 1, 1, tzinfo=UTC), 3) == [
        date(2092, 2, 29), date(2096, 2, 29), date(2104, 2, 29),  # 2100 is not a leap year
    ]


def test_last_and_31_together_fire_once_on_long_months() -> None:
    spec = ScheduleSpec(0, calendar=Calendar(monthdays=(31, -1)))
    assert days(spec, JAN_2026, 3) == [date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31)]


def test_calendar_day_fields_must_all_hold() -> None:
    friday_13th = ScheduleSpec(0, calendar=Calendar(weekdays=(4,), monthdays=(13,)))
    assert days(friday_13th, JAN_2026, 3) == [date(2026, 2, 13), date(2026, 3, 13),
                                              date(2026, 11, 13)]


def test_cron_day_fields_either_holds_when_both_restricted() -> None:
    spec = ScheduleSpec(0, cron="0 0 13 * 5")  # the 13th, or any Friday
    assert days(spec, JAN_2026, 3) == [date(2026, 1, 2), date(2026, 1, 9), date(2026, 1, 13)]


def test_weekdays_and_months() -> None:
    spec = ScheduleSpec(0, calendar=Calendar(at=(time(6, 0), time(18, 0)),
                                             weekdays=(0, 2, 4), months=(3,)))
    got = firings(compile_schedule(spec, UTC_ZONE), JAN_2026, 4)
    assert [g.replace(tzinfo=None) for g in got] == [
        datetime(2026, 3, 2, 6), datetime(2026, 3, 2, 18),
        datetime(2026, 3, 4, 6), datetime(2026, 3, 4, 18),
    ]


def times_of(cal: Calendar, n: int) -> list[time]:
    got = firings(compile_schedule(ScheduleSpec(0, calendar=cal), UTC_ZONE), JAN_2026, n)
    return [g.time() for g in got]


def test_hours_alone_fire_at_minute_zero() -> None:
    assert times_of(Calendar(hours=(9, 17)), 3) == [time(17), time(9), time(17)]


def test_minutes_alone_fire_every_hour() -> None:
    assert times_of(Calendar(minutes=(0, 30)), 3) == [time(12, 30), time(13), time(13, 30)]


def test_hours_and_minutes_combine() -> None:
    assert times_of(Calendar(hours=(1, 2), minutes=(15, 45)), 5) == [
        time(1, 15), time(1, 45), time(2, 15), time(2, 45), time(1, 15)
    ]


def test_no_times_fires_at_midnight() -> None:
    assert times_of(Calendar(weekdays=(0,)), 2) == [time(0), time(0)]


@pytest.mark.parametrize(
    ("expr", "first"),
    [
        ("@yearly", datetime(2026, 1, 1)),
        ("@annually", datetime(2026, 1, 1)),
        ("@monthly", datetime(2026, 1, 1)),
        ("@weekly", datetime(2026, 1, 4)),  # Sunday
        ("@daily", datetime(2026, 1, 1)),
        ("@midnight", datetime(2026, 1, 1)),
        ("@hourly", datetime(2025, 12, 31, 13)),
        ("30 2 * * 1-5", datetime(2026, 1, 1, 2, 30)),
        ("0 9 * jan mon", datetime(2026, 1, 5, 9)),
    ],
)
def test_cron_forms(expr: str, first: datetime) -> None:
    sched = compile_schedule(ScheduleSpec(0, cron=expr), UTC_ZONE)
    got = sched.next_after(JAN_2026)
    assert got is not None and got.replace(tzinfo=None) == first


@pytest.mark.parametrize(
    "expr",
    [
        "", "* * * *", "0 0 * * * *", "61 * * * *", "0 0 30 2 *", "0 0 31 4 *", "@reboot",
        "x y z w v",
    ],
)
def test_check_cron_rejects(expr: str) -> None:
    problem = check_cron(expr)
    assert problem is not None and problem
    with pytest.raises(ValueError):
        compile_schedule(ScheduleSpec(0, cron=expr), UTC_ZONE)


@pytest.mark.parametrize("expr", ["0 0 L * *", "*/15 * * * *", "@Daily", "0 0 29 2 *"])
def test_check_cron_accepts(expr: str) -> None:
    assert check_cron(expr) is None


@pytest.mark.parametrize(
    ("cal", "exception"),
    [
        (Calendar(monthdays=(30,), months=(2,)), False),
        (Calendar(hours=(24,)), False),
        (Calendar(minutes=(60,)), False),
        (Calendar(weekdays=(7,)), False),
        (Calendar(monthdays=(0,)), False),
        (Calendar(months=(13,)), False),
        (Calendar(at=(time(1, 2, 3),)), False),
        (Calendar(dates=(date(2026, 1, 1),)), False),
        (Calendar(), True),
    ],
)
def test_check_calendar_rejects(cal: Calendar, exception: bool) -> None:
    assert check_calendar(cal, exception=exception)


def test_check_calendar_accepts() -> None:
    assert check_calendar(Calendar(monthdays=(29,), months=(2,), weekdays=(0,))) == []
    assert check_calendar(Calendar(dates=(date(2026, 12, 25),)), exception=True) == []


@pytest.mark.parametrize(("expr", "said"), [
    ("0 0 30 2 *", "'0 0 30 2 *' never fires: no month of '2' has day-of-month '30'"),
    ("0 0 31 4,jun *", "'0 0 31 4,jun *' never fires: no month of '4,jun' has day-of-month"
                       " '31'"),
    ("0 0 32 * *", "bad cron expression '0 0 32 * *': Bad day-of-month"),
    ("0 0 30 13 *", "bad cron expression '0 0 30 13 *': Bad month"),
])
def test_a_day_no_month_has_is_said_to_never_fire(expr: str, said: str) -> None:
    # "Bad day-of-month" for 30 February read as a typo in the day field.
    assert check_cron(expr) == said
