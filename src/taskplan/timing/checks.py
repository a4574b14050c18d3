"""Validation the job-file loader can call before building a schedule.

Each helper returns messages (no positions: the loader knows where the value came from).
`compile_schedule` refuses what these report, so a file that validates always compiles.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from taskplan.model import Calendar, ScheduleSpec
from taskplan.timing.calendar import check_calendar
from taskplan.timing.cron import check_cron

__all__ = ["check_calendar", "check_cron", "check_exception", "check_schedule", "check_timezone"]


def check_timezone(name: str) -> str | None:
    """Why `name` is not a usable IANA time zone, or None."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r} (expected an IANA name such as Europe/Paris)"
    return None


def check_exception(cal: Calendar) -> list[str]:
    return check_calendar(cal, exception=True)


def check_schedule(spec: ScheduleSpec) -> list[str]:
    """Everything wrong with one schedule entry; empty if it compiles."""
    kinds = [k for k in ("cron", "calendar", "every", "once") if getattr(spec, k) is not None]
    if len(kinds) != 1:
        found = ", ".join(kinds) if kinds else "none"
        return [f"a schedule needs exactly one of cron, calendar, every, once (found: {found})"]
    problems: list[str] = []
    if spec.cron is not None:
        problem = check_cron(spec.cron)
        if problem is not None:
            problems.append(problem)
    if spec.calendar is not None:
        problems += check_calendar(spec.calendar)
    if spec.business_day is not None:
        if spec.business_calendar is None:
            problems.append("business_day needs a calendar: naming the business calendar")
        if spec.business_day == 0 or abs(spec.business_day) > 23:
            problems.append(f"business_day must be 1..23 or -1..-23, got {spec.business_day}")
        if spec.calendar is not None and (spec.calendar.weekdays or spec.calendar.monthdays):
            problems.append("business_day picks the day itself: drop weekdays and monthdays")
        if spec.cron is not None:
            problems.append("business_day goes with at/hours/minutes, not cron")
    if spec.every is not None and round(spec.every * 1_000_000) <= 0:
        problems.append(f"`every` must be a positive duration, got {spec.every!r} s")
    if spec.max_runs is not None:
        if spec.max_runs < 0:
            problems.append("max_runs must not be negative")
        if spec.start is None and spec.once is None:
            problems.append("max_runs needs a start to count from")
    # An end before start only means no firing (both bounds are inclusive): the job file's own
    # rule reports it, at the `end` key.
    return problems
