"""start, end, max_runs, once, every anchors, exceptions, a job's merged firings, the checks."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from taskplan.cli.firing_cmds import suppressed_firings
from taskplan.model import BusinessCalendar, Calendar, JobSpec, ScheduleSpec
from taskplan.timing import (
    calendar_skips,
    check_schedule,
    check_timezone,
    compile_schedule,
    count_firings_between,
    firings,
    next_firings,
)
from taskplan.timing.business import ClosedDays

PARIS = ZoneInfo("Europe/Paris")
UTC_ZONE = ZoneInfo("UTC")
EARLY = datetime(2020, 1, 1, tzinfo=UTC)


def walls(got: list[datetime]) -> list[datetime]:
    return [g.replace(tzinfo=None) for g in got]


def test_start_is_inclusive_and_nothing_fires_before_it() -> None:
    spec = ScheduleSpec(0, cron="0 6 * * *", start=datetime(2026, 5, 1, 6, 0))
    got = firings(compile_schedule(spec, PARIS), EARLY, 2)
    assert walls(got) == [datetime(2026, 5, 1, 6), datetime(2026, 5, 2, 6)]


def test_end_is_inclusive_and_nothing_fires_after_it() -> None:
    spec = ScheduleSpec(0, cron="0 6 * * *", start=datetime(2026, 5, 1),
                        end=datetime(2026, 5, 3, 6, 0))
    sched = compile_schedule(spec, PARIS)
    assert walls(firings(sched, EARLY, 10)) == [
        datetime(2026, 5, 1, 6), datetime(2026, 5, 2, 6), datetime(2026, 5, 3, 6)
    ]
    assert sched.next_after(datetime(2026, 5, 3, 6, tzinfo=PARIS)) is None


def test_max_runs_counts_from_start() -> None:
    spec = ScheduleSpec(0, cron="0 6 * * *", start=datetime(2026, 5, 1), max_runs=3)
    sched = compile_schedule(spec, PARIS)
    assert walls(firings(sched, EARLY, 10)) == [
        datetime(2026, 5, 1, 6), datetime(2026, 5, 2, 6), datetime(2026, 5, 3, 6)
    ]
    # Asking from the middle does not restart the count.
    assert walls(firings(sched, datetime(2026, 5, 2, 7, tzinfo=PARIS), 10)) == [
        datetime(2026, 5, 3, 6)
    ]
    assert sched.next_after(datetime(2030, 1, 1, tzinfo=UTC)) is None


def test_max_runs_on_every_is_arithmetic() -> None:
    spec = ScheduleSpec(0, every=900.0, start=datetime(2016, 1, 1), max_runs=10**7)
    sched = compile_schedule(spec, UTC_ZONE)
    last = datetime(2016, 1, 1, tzinfo=UTC) + (10**7 - 1) * timedelta(minutes=15)
    assert sched.next_after(last - timedelta(seconds=1)) == last
    assert sched.next_after(last) is None


def test_suppressed_firings_do_not_count_toward_max_runs() -> None:
    spec = ScheduleSpec(0, cron="0 6 * * *", start=datetime(2026, 5, 1), max_runs=3)  # a Friday
    sched = compile_schedule(spec, PARIS, [Calendar(weekdays=(5, 6))])
    assert walls(firings(sched, EARLY, 10)) == [
        datetime(2026, 5, 1, 6), datetime(2026, 5, 4, 6), datetime(2026, 5, 5, 6)
    ]


def test_max_runs_zero_never_fires() -> None:
    spec = ScheduleSpec(0, cron="0 6 * * *", start=datetime(2026, 5, 1), max_runs=0)
    assert firings(compile_schedule(spec, PARIS), EARLY, 3) == []


def test_max_runs_without_start_is_refused() -> None:
    spec = ScheduleSpec(0, cron="0 6 * * *", max_runs=3)
    assert check_schedule(spec) == ["max_runs needs a start to count from"]
    with pytest.raises(ValueError, match="start"):
        compile_schedule(spec, PARIS)


def test_once_fires_once() -> None:
    sched = compile_schedule(ScheduleSpec(0, once=datetime(2026, 12, 24, 18, 0)), PARIS)
    assert [g.isoformat() for g in firings(sched, EARLY, 3)] == ["2026-12-24T18:00:00+01:00"]
    assert sched.next_after(datetime(2026, 12, 24, 17, tzinfo=UTC)) is None
    with_runs = ScheduleSpec(0, once=datetime(2026, 12, 24, 18, 0), max_runs=1)
    assert len(firings(compile_schedule(with_runs, PARIS), EARLY, 3)) == 1


def test_every_without_start_counts_from_local_1970_midnight() -> None:
    sched = compile_schedule(ScheduleSpec(0, every=6 * 3600.0), ZoneInfo("Asia/Kolkata"))
    got = sched.next_after(datetime(2026, 7, 1, 1, 0, tzinfo=ZoneInfo("Asia/Kolkata")))
    assert got is not None and got.isoformat() == "2026-07-01T06:00:00+05:30"


def test_every_ten_years_after_start_is_exact() -> None:
    start = datetime(2016, 1, 1, 0, 0, 7)
    sched = compile_schedule(ScheduleSpec(0, every=900.0, start=start), PARIS)
    got = sched.next_after(datetime(2026, 6, 1, 12, 1, tzinfo=UTC))
    assert got is not None
    assert got.astimezone(UTC) == datetime(2026, 6, 1, 12, 0, 7, tzinfo=UTC) + timedelta(minutes=15)


def test_naive_after_is_refused() -> None:
    sched = compile_schedule(ScheduleSpec(0, cron="@daily"), PARIS)
    with pytest.raises(ValueError, match="aware"):
        sched.next_after(datetime(2026, 1, 1))


# -- exceptions -------------------------------------------------------------------------------

def test_dates_suppress_whole_local_days() -> None:
    sched = compile_schedule(ScheduleSpec(0, cron="0 */6 * * *"), PARIS,
                             [Calendar(dates=(date(2026, 12, 25),))])
    got = firings(sched, datetime(2026, 12, 24, 12, tzinfo=PARIS), 4)
    assert walls(got) == [datetime(2026, 12, 24, 18), datetime(2026, 12, 26, 0),
                          datetime(2026, 12, 26, 6), datetime(2026, 12, 26, 12)]


def test_dates_are_local_days_for_every_schedules_too() -> None:
    # Every 10 minutes in absolute time; 25 December Paris time is 23:00Z..23:00Z.
    sched = compile_schedule(ScheduleSpec(0, every=600.0), PARIS,
                             [Calendar(dates=(date(2026, 12, 25),))])
    got = sched.next_after(datetime(2026, 12, 24, 22, 55, tzinfo=UTC))
    assert got is not None and got.isoformat() == "2026-12-26T00:00:00+01:00"


def test_weekday_exception_without_time_suppresses_the_whole_day() -> None:
    sched = compile_schedule(
        ScheduleSpec(0, calendar=Calendar(at=(time(6), time(18)))), PARIS, [Calendar(weekdays=(4,))]
    )
    got = firings(sched, datetime(2026, 1, 8, 12, tzinfo=PARIS), 3)  # a Thursday
    assert walls(got) == [datetime(2026, 1, 8, 18), datetime(2026, 1, 10, 6),
                          datetime(2026, 1, 10, 18)]


def test_weekday_exception_with_time_suppresses_only_that_time() -> None:
    sched = compile_schedule(
        ScheduleSpec(0, calendar=Calendar(at=(time(6), time(18)))), PARIS,
        [Calendar(weekdays=(4,), at=(time(6),))],
    )
    got = firings(sched, datetime(2026, 1, 8, 12, tzinfo=PARIS), 3)
    assert walls(got) == [datetime(2026, 1, 8, 18), datetime(2026, 1, 9, 18),
                          datetime(2026, 1, 10, 6)]


@pytest.mark.parametrize("excepted", [time(2, 30), time(3, 30)])
def test_exception_matches_a_shifted_firing_by_listed_or_actual_time(excepted: time) -> None:
    sched = compile_schedule(ScheduleSpec(0, cron="30 2 * * *"), PARIS,
                             [Calendar(at=(excepted,), months=(3,), monthdays=(29,))])
    got = firings(sched, datetime(2026, 3, 28, 12, tzinfo=PARIS), 1)
    assert [g.isoformat() for g in got] == ["2026-03-30T02:30:00+02:00"]


def test_exception_by_hours_and_minutes() -> None:
    sched = compile_schedule(ScheduleSpec(0, cron="*/30 8-9 * * *"), UTC_ZONE,
                             [Calendar(hours=(8,), minutes=(30,))])
    got = firings(sched, datetime(2026, 1, 1, tzinfo=UTC), 3)
    assert [g.time() for g in got] == [time(8), time(9), time(9, 30)]


def test_count_firings_between() -> None:
    sched = compile_schedule(ScheduleSpec(0, cron="0 * * * *"), UTC_ZONE)
    day = datetime(2026, 1, 1, tzinfo=UTC)
    assert count_firings_between(sched, day, day + timedelta(days=1)) == 24  # (start, end]
    assert count_firings_between(sched, day, day + timedelta(days=1), limit=5) == 5


# -- a job ------------------------------------------------------------------------------------

def job(**kw: object) -> JobSpec:
    return JobSpec(name="j", tasks=(), **kw)  # type: ignore[arg-type]


def test_next_firings_merges_schedules_in_time_order_ties_by_index() -> None:
    spec = job(
        timezone="Europe/Paris",
        schedules=(
            ScheduleSpec(0, name="noon", cron="0 12 * * *"),
            ScheduleSpec(1, calendar=Calendar(at=(time(6), time(12)))),
        ),
        exceptions=(Calendar(dates=(date(2026, 1, 2),)),),
    )
    got = next_firings(spec, datetime(2026, 1, 1, tzinfo=UTC), 5)
    assert [(g.isoformat(), s.key) for g, s in got] == [
        ("2026-01-01T06:00:00+01:00", "1"),
        ("2026-01-01T12:00:00+01:00", "noon"),
        ("2026-01-01T12:00:00+01:00", "1"),
        ("2026-01-03T06:00:00+01:00", "1"),
        ("2026-01-03T12:00:00+01:00", "noon"),
    ]


def test_next_firings_orders_by_real_time_through_the_repeated_hour() -> None:
    spec = job(
        timezone="Europe/Paris",
        schedules=(
            ScheduleSpec(0, cron="*/30 * * * *"),
            ScheduleSpec(1, calendar=Calendar(at=(time(2, 45),))),
        ),
    )
    got = next_firings(spec, datetime(2026, 10, 25, 0, 50, tzinfo=UTC), 4)
    assert [(g.isoformat(), s.index) for g, s in got] == [
        ("2026-10-25T02:00:00+01:00", 0),
        ("2026-10-25T02:30:00+01:00", 0),
        ("2026-10-25T03:00:00+01:00", 0),
        ("2026-10-25T03:30:00+01:00", 0),
    ]
    got = next_firings(spec, datetime(2026, 10, 24, 23, 50, tzinfo=UTC), 4)
    assert [(g.isoformat(), s.index) for g, s in got] == [
        ("2026-10-25T02:00:00+02:00", 0),
        ("2026-10-25T02:30:00+02:00", 0),
        ("2026-10-25T02:45:00+02:00", 1),  # before 02:00+01:00, though it reads later
        ("2026-10-25T02:00:00+01:00", 0),
    ]



def test_firings_in_the_repeated_hour_are_bounded_as_instants() -> None:
    # Aware datetimes sharing a zone compare by wall clock with fold ignored: the second
    # 02:00 reads earlier than the first 02:30, so bounds must be compared as instants.
    spec = job(timezone="Europe/Paris",
               schedules=(ScheduleSpec(0, cron="*/30 * * * *", business_calendar="closed"),))
    closed = {"closed": ClosedDays(BusinessCalendar("closed", dates=(date(2026, 10, 25),)))}
    until = datetime(2026, 10, 25, 2, 0, tzinfo=PARIS, fold=1)  # 01:00Z
    got = calendar_skips(spec, datetime(2026, 10, 25, 1, 45, tzinfo=PARIS), until,
                         calendars=closed)
    assert [at.isoformat() for at, _, _ in got] == [
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00"]
    # Nothing is excepted: no firing of the night is reported dropped.
    plain = job(timezone="Europe/Paris", schedules=(ScheduleSpec(0, cron="*/30 * * * *"),))
    assert suppressed_firings(plain, datetime(2026, 10, 25, 1, 0, tzinfo=PARIS),
                              datetime(2026, 10, 25, 4, 0, tzinfo=PARIS), "UTC", None, 20) == []

def test_next_firings_uses_the_default_zone_and_stops_when_exhausted() -> None:
    spec = job(schedules=(ScheduleSpec(0, once=datetime(2026, 1, 1, 9)),))
    got = next_firings(spec, datetime(2025, 1, 1, tzinfo=UTC), 5, default_tz="America/New_York")
    assert [g.isoformat() for g, _ in got] == ["2026-01-01T09:00:00-05:00"]
    assert next_firings(job(), datetime(2025, 1, 1, tzinfo=UTC), 5) == []


def test_check_schedule() -> None:
    assert check_schedule(ScheduleSpec(0, cron="@daily")) == []
    assert check_schedule(ScheduleSpec(0)) != []
    assert check_schedule(ScheduleSpec(0, cron="@daily", every=60.0)) != []
    assert check_schedule(ScheduleSpec(0, every=0.0)) != []
    # An end before start is the job file's to report, at its key (spec.checks).
    assert check_schedule(ScheduleSpec(0, cron="@daily", start=datetime(2026, 2, 1),
                                       end=datetime(2026, 1, 1))) == []
    assert check_timezone("Europe/Paris") is None
    assert check_timezone("Mars/Olympus") is not None
    assert check_timezone("../etc/passwd") is not None
