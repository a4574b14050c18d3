"""Business calendars: closed days from public holidays (GB, US-NY, FR), listed dates and
weekends; schedules bound to them (skip, shift next/previous, Nth business day), across year
ends, leap years and DST days. Worked examples plus hypothesis properties."""

from __future__ import annotations

import calendar as cal_mod
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskplan.model import BusinessCalendar, Calendar, HolidaySource, ScheduleSpec, Shift
from taskplan.timing import compile_schedule, firings
from taskplan.timing.business import ClosedDays, check_holiday_source
from taskplan.timing.checks import check_schedule

UK = BusinessCalendar("uk", holidays=(HolidaySource("GB", "ENG"),), dates=(date(2026, 12, 24),))
NY = BusinessCalendar("ny", holidays=(HolidaySource("US", "NY"),))
FR = BusinessCalendar("fr", holidays=(HolidaySource("FR"),))
CALENDARS = {c.name: ClosedDays(c) for c in (UK, NY, FR)}

props = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def schedule(zone: str, **kw: object) -> ScheduleSpec:
    at = kw.pop("at", (time(6, 0),))
    form = Calendar(at=at, weekdays=kw.pop("weekdays", ()),  # type: ignore[arg-type]
                    monthdays=kw.pop("monthdays", ()), months=kw.pop("months", ()))  # type: ignore[arg-type]
    return ScheduleSpec(index=0, calendar=form, **kw)  # type: ignore[arg-type]


def fire_days(spec: ScheduleSpec, zone: str, after: datetime, n: int) -> list[date]:
    tz = ZoneInfo(zone)
    compiled = compile_schedule(spec, tz, (), CALENDARS)
    return [f.astimezone(tz).date() for f in firings(compiled, after, n)]


# -- closed days -------------------------------------------------------------------------------

def test_reasons_name_the_holiday_and_its_country() -> None:
    uk = CALENDARS["uk"]
    assert uk.reason(date(2026, 12, 25)) == "Christmas Day (GB)"
    assert uk.reason(date(2026, 12, 28)) == "Boxing Day (observed) (GB)"
    assert uk.reason(date(2026, 12, 24)) == "closed date of calendar uk"
    assert uk.reason(date(2026, 12, 27)) == "weekend (sun)"
    assert uk.reason(date(2026, 12, 23)) is None
    assert CALENDARS["fr"].reason(date(2026, 7, 14)) == "National Day (FR)"
    assert CALENDARS["ny"].reason(date(2026, 11, 26)) == "Thanksgiving Day (US)"
    # Subdivisions matter: Lincoln's Birthday is a New York holiday, not a federal one.
    assert CALENDARS["ny"].reason(date(2026, 2, 12)) == "Lincoln's Birthday (US)"
    federal = ClosedDays(BusinessCalendar("us", holidays=(HolidaySource("US"),)))
    assert federal.reason(date(2026, 2, 12)) is None


def test_unknown_country_or_subdivision_is_explained() -> None:
    assert "unknown country code 'XX'" in (check_holiday_source(HolidaySource("XX")) or "")
    why = check_holiday_source(HolidaySource("GB", "ZZZ")) or ""
    assert "unknown subdivision 'ZZZ' of GB" in why and "ENG" in why
    assert check_holiday_source(HolidaySource("US", "NY")) is None


# -- worked examples ---------------------------------------------------------------------------

def test_gb_business_days_across_the_year_end() -> None:
    spec = schedule("Europe/London", business_calendar="uk")
    days = fire_days(spec, "Europe/London", datetime(2026, 12, 22, tzinfo=UTC), 6)
    # 24 Dec (listed), 25/26/28 Dec (holidays), 27 Dec and 2-3 Jan (weekend), 1 Jan (holiday).
    assert days == [date(2026, 12, 22), date(2026, 12, 23), date(2026, 12, 29),
                    date(2026, 12, 30), date(2026, 12, 31), date(2027, 1, 4)]


def test_nth_and_last_business_day_gb() -> None:
    third = schedule("Europe/London", business_calendar="uk", business_day=3)
    assert fire_days(third, "Europe/London", datetime(2026, 12, 1, tzinfo=UTC), 3) == [
        date(2026, 12, 3), date(2027, 1, 6), date(2027, 2, 3)]
    last = schedule("Europe/London", business_calendar="uk", business_day=-1)
    # 31 Dec 2026 is a Thursday and open; 26 Feb 2027 is the last weekday of February.
    assert fire_days(last, "Europe/London", datetime(2026, 12, 1, tzinfo=UTC), 3) == [
        date(2026, 12, 31), date(2027, 1, 29), date(2027, 2, 26)]


def test_last_business_day_of_a_leap_february_fr() -> None:
    last = schedule("Europe/Paris", business_calendar="fr", business_day=-1, months=(2,))
    # 29 Feb 2028 is a Tuesday; 2027 ends on Friday the 26th (28th is a Sunday).
    assert fire_days(last, "Europe/Paris", datetime(2027, 1, 1, tzinfo=UTC), 2) == [
        date(2027, 2, 26), date(2028, 2, 29)]


def test_shift_next_and_previous_us_ny() -> None:
    # The 4th of July 2026 is a Saturday, observed on Friday the 3rd in New York.
    base = {"business_calendar": "ny", "monthdays": (3, 4)}
    after = datetime(2026, 7, 1, tzinfo=UTC)
    nxt = schedule("America/New_York", shift=Shift.NEXT, **base)
    # 3 Jul (observed holiday) and 4 Jul (Saturday) both move to Monday 6 Jul, once.
    assert fire_days(nxt, "America/New_York", after, 2) == [date(2026, 7, 6), date(2026, 8, 3)]
    prev = schedule("America/New_York", shift=Shift.PREVIOUS, **base)
    assert fire_days(prev, "America/New_York", after, 2) == [date(2026, 7, 2), date(2026, 8, 3)]
    skip = schedule("America/New_York", **base)
    assert fire_days(skip, "America/New_York", after, 2) == [date(2026, 8, 3), date(2026, 8, 4)]


def test_dst_days_keep_their_local_time() -> None:
    # 29 Mar 2026 (spring forward in Paris) is a Sunday: the next business day is Monday 30th,
    # at 02:30 local time, which exists on Mondays.
    spec = schedule("Europe/Paris", business_calendar="fr", at=(time(2, 30),),
                    shift=Shift.NEXT, monthdays=(29,))
    tz = ZoneInfo("Europe/Paris")
    compiled = compile_schedule(spec, tz, (), CALENDARS)
    first = firings(compiled, datetime(2026, 3, 1, tzinfo=UTC), 1)[0]
    assert first == datetime(2026, 3, 30, 2, 30, tzinfo=tz)
    assert first.utcoffset() == timedelta(hours=2)


def test_business_day_needs_a_calendar_and_no_day_filters() -> None:
    assert any("business_day needs a calendar" in p
               for p in check_schedule(schedule("UTC", business_day=2)))
    assert any("drop weekdays and monthdays" in p for p in check_schedule(
        schedule("UTC", business_day=2, business_calendar="uk", weekdays=(0,))))


def test_unknown_calendar_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown calendar 'nope'"):
        compile_schedule(schedule("UTC", business_calendar="nope"), ZoneInfo("UTC"), (),
                         CALENDARS)


# -- properties --------------------------------------------------------------------------------

zones = st.sampled_from(["UTC", "Europe/London", "America/New_York", "Europe/Paris"])
names = st.sampled_from(sorted(CALENDARS))
starts = st.datetimes(min_value=datetime(2019, 1, 1), max_value=datetime(2031, 1, 1),
                      timezones=st.just(UTC))
monthdays = st.lists(st.integers(1, 28) | st.just(-1), min_size=1, max_size=4, unique=True)


@props
@given(zone=zones, name=names, after=starts, days=monthdays)
def test_skip_never_fires_on_a_closed_day(zone: str, name: str, after: datetime,
                                          days: list[int]) -> None:
    spec = schedule(zone, business_calendar=name, monthdays=tuple(days))
    got = fire_days(spec, zone, after, 8)
    assert got and all(CALENDARS[name].is_open(d) for d in got)
    assert all(a < b for a, b in pairwise(got))


@props
@given(zone=zones, name=names, after=starts, n=st.integers(1, 15) | st.integers(-15, -1))
def test_nth_business_day_is_counted_right(zone: str, name: str, after: datetime,
                                           n: int) -> None:
    got = fire_days(schedule(zone, business_calendar=name, business_day=n), zone, after, 4)
    closed = CALENDARS[name]
    for day in got:
        last = cal_mod.monthrange(day.year, day.month)[1]
        open_days = [d for d in (date(day.year, day.month, i) for i in range(1, last + 1))
                     if closed.is_open(d)]
        assert open_days[n - 1 if n > 0 else n] == day
    months = [(d.year, d.month) for d in got]
    assert len(set(months)) == len(months) == 4


@props
@given(zone=zones, name=names, after=starts, days=monthdays,
       shift=st.sampled_from([Shift.NEXT, Shift.PREVIOUS]))
def test_shifted_firings_land_on_the_nearest_open_day(
        zone: str, name: str, after: datetime, days: list[int], shift: Shift) -> None:
    closed = CALENDARS[name]
    plain = schedule(zone, monthdays=tuple(days))
    shifted = schedule(zone, business_calendar=name, monthdays=tuple(days), shift=shift)
    got = set(fire_days(shifted, zone, after, 12))
    assert all(closed.is_open(d) for d in got)
    step = timedelta(days=1 if shift is Shift.NEXT else -1)
    window = sorted(got)
    for day in fire_days(plain, zone, after, 12):
        target = day
        while not closed.is_open(target):
            target += step
        if window[0] < target < window[-1]:
            assert target in got, (day, target)


@pytest.mark.parametrize("shift", [Shift.NEXT, Shift.PREVIOUS])
def test_a_firing_no_shift_can_place_is_said_dropped_not_moved(shift: Shift) -> None:
    """A shift looks across at most 31 closed days. `next` said such a firing was 'moved to
    the next business day' though it never fires anywhere."""
    from taskplan.model import JobSpec
    from taskplan.timing import calendar_skips, next_with_skips

    closed = [date(2027, 1, 1) + timedelta(days=i) for i in range(45)]  # 1 Jan .. 14 Feb
    calendars = {"long": ClosedDays(BusinessCalendar("long", dates=tuple(closed),
                                                     weekends=()))}
    days = [1] if shift is Shift.NEXT else [14, 31]
    spec = schedule("UTC", monthdays=tuple(days), business_calendar="long", shift=shift)
    job = JobSpec(name="j", tasks=(), schedules=(spec,))
    after, until = datetime(2026, 12, 20, tzinfo=UTC), datetime(2027, 2, 28, tzinfo=UTC)
    said = {at.date(): why for at, _, why in calendar_skips(job, after, until,
                                                            calendars=calendars)}
    word = shift.value
    if shift is Shift.NEXT:  # 1 Jan: no open day until 15 Feb; 1 Feb: moved to 15 Feb
        assert said[date(2027, 1, 1)].startswith(f"no {word} business day within 31 days:")
        assert said[date(2027, 2, 1)].startswith(f"moved to the {word} business day:")
    else:  # 14 Feb: no open day since 31 Dec; 14 Jan, 31 Jan: moved to 31 Dec
        assert said[date(2027, 2, 14)].startswith(f"no {word} business day within 31 days:")
        assert said[date(2027, 1, 14)].startswith(f"moved to the {word} business day:")
        assert said[date(2027, 1, 31)].startswith(f"moved to the {word} business day:")
    fired = [at.date() for at, _, why in next_with_skips(job, after, 3, calendars=calendars)
             if why is None]
    assert fired == ([date(2027, 2, 15), date(2027, 3, 1), date(2027, 4, 1)]
                     if shift is Shift.NEXT else
                     [date(2026, 12, 31), date(2027, 3, 14), date(2027, 3, 31)])


def test_a_minutely_schedule_on_business_days_reads_each_day_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each firing of `cron: "* * * * *"` with a calendar rebuilt its day's 1,440 times (40 ms
    a firing: `next -n 1000` took 38 s, and the scheduler paid it at every pass)."""
    from taskplan.timing.cron import CronWalls

    calls = [0]
    plain = CronWalls.next_wall

    def counted(self: CronWalls, wall: datetime) -> datetime | None:
        calls[0] += 1
        return plain(self, wall)

    monkeypatch.setattr(CronWalls, "next_wall", counted)
    spec = ScheduleSpec(index=0, cron="* * * * *", business_calendar="uk", shift=Shift.NEXT)
    got = firings(compile_schedule(spec, ZoneInfo("Europe/London"), (), CALENDARS),
                  datetime(2026, 12, 23, 23, 0, tzinfo=UTC), 240)
    # 23 Dec from 23:01, then 24-28 Dec closed (listed, Christmas, weekend, Boxing Day): their
    # firings move to the 29th, where each minute fires once.
    assert got[58].isoformat() == "2026-12-23T23:59:00+00:00"
    assert got[59].isoformat() == "2026-12-29T00:00:00+00:00"
    assert got[-1].isoformat() == "2026-12-29T03:00:00+00:00" and len(got) == 240
    assert calls[0] < 10 * 1441, calls[0]  # a few days' times, not 1,440 per firing


def test_skips_end_with_the_schedules_last_firing_and_every_schedule_gets_its_own() -> None:
    """`next` listed a calendar's skips of a schedule that had fired its max_runs for a whole
    year after its last firing, and those of the first schedule took up all 100 places, so a
    later schedule's skips were never listed."""
    from taskplan.model import JobSpec
    from taskplan.timing import next_with_skips

    start = datetime(2026, 12, 22)
    first = schedule("UTC", start=start, max_runs=3, business_calendar="uk")
    shifted = ScheduleSpec(index=1, name="shifted", calendar=Calendar(at=(time(7, 0),)),
                           start=start, max_runs=4, business_calendar="uk", shift=Shift.NEXT)
    late = ScheduleSpec(index=2, name="late", calendar=Calendar(at=(time(8, 0),)),
                        start=datetime(2027, 1, 1), max_runs=1, business_calendar="uk")
    job = JobSpec(name="j", tasks=(), schedules=(first, shifted, late))
    # Asked for more firings than there are: the skips are looked for up to a year ahead.
    line = next_with_skips(job, datetime(2026, 12, 21, tzinfo=UTC), 20, calendars=CALENDARS)
    said = [(at.date().isoformat(), s.index, why is None) for at, s, why in line]
    # uk: 24 Dec listed, 25 Christmas, 26-27 weekend, 28 Boxing Day (observed); 1 Jan closed,
    # 2-3 weekend. The first fires 22, 23 and 29 Dec; nothing of it is listed after that.
    assert [d for d, i, fired in said if i == 0] == [
        "2026-12-22", "2026-12-23", "2026-12-24", "2026-12-25", "2026-12-26", "2026-12-27",
        "2026-12-28", "2026-12-29"]
    # The shifted one fires 22, 23, 29 (also for 24-28) and 30 Dec: 31 Dec is past its fourth.
    assert [d for d, i, fired in said if i == 1 and fired] == [
        "2026-12-22", "2026-12-23", "2026-12-29", "2026-12-30"]
    assert [d for d, i, fired in said if i == 1 and not fired] == [
        "2026-12-24", "2026-12-25", "2026-12-26", "2026-12-27", "2026-12-28"]
    # The last one's own skips are listed, though the others had many.
    assert [(d, fired) for d, i, fired in said if i == 2] == [
        ("2027-01-01", False), ("2027-01-02", False), ("2027-01-03", False),
        ("2027-01-04", True)]


def test_a_firing_moved_past_the_schedules_bounds_is_said_dropped() -> None:
    """1 Jan moved back to 31 Dec, before the schedule's start, never fires; `next` said it
    was moved."""
    from taskplan.model import JobSpec
    from taskplan.timing import next_with_skips

    back = schedule("UTC", monthdays=(1,), start=datetime(2027, 1, 1),
                    business_calendar="ny", shift=Shift.PREVIOUS)
    on = ScheduleSpec(index=1, name="on", calendar=Calendar(at=(time(7, 0),), monthdays=(25,),
                                                            months=(12,)),
                      end=datetime(2026, 12, 25, 23, 0), business_calendar="ny",
                      shift=Shift.NEXT)
    job = JobSpec(name="j", tasks=(), schedules=(back, on))
    line = next_with_skips(job, datetime(2026, 12, 1, tzinfo=UTC), 2, calendars=CALENDARS)
    said = {(at.date().isoformat(), s.index): why for at, s, why in line}
    assert said[("2027-01-01", 0)] == (
        "no previous business day since the schedule's start: New Year's Day (US)")
    assert said[("2026-12-25", 1)] == (
        "no next business day before the schedule's end: Christmas Day (US)")
    assert ("2026-12-31", 0) not in said and ("2026-12-28", 1) not in said
