"""Field types for the job-file schema, each failing with a message that says what it expected.

Every validator raises ``PydanticCustomError("taskplan", "expected ...")``; the loader appends
what it got and the position. Values arrive as plain data (see source.py): dates and times are
ISO strings, never Python date objects.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Annotated, Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, PlainValidator
from pydantic_core import PydanticCustomError

from taskplan.model import AGENT_LABEL_RE as AGENT_LABEL_RE  # re-exported: importers use it
from taskplan.model import AGENT_LABEL_WORDS
from taskplan.spec.durations import EXPECTED as DURATION_EXPECTED
from taskplan.spec.durations import parse_duration

ERROR_TYPE = "taskplan"
JOB_NAME_RE = re.compile(r"[a-z0-9_-]+")
COUNTRY_RE = re.compile(r"[A-Z]{2,3}")
TASK_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
PYTHON_REF_RE = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")

T = TypeVar("T")
E = TypeVar("E", bound=StrEnum)


def fail(expected: str) -> PydanticCustomError:
    return PydanticCustomError(ERROR_TYPE, expected)


# Whole numbers are stored in 32-bit columns on some backends and bound into SQL: anything
# larger is a typo, refused here rather than overflowing when a run is created.
WHOLE_MAX = 2**31 - 1


def _whole(minimum: int | None) -> Callable[[Any], int]:
    words = "a whole number" + (f" >= {minimum}" if minimum is not None else "")
    low = -WHOLE_MAX if minimum is None else minimum

    def check(v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise fail(f"expected {words}")
        if minimum is not None and v < minimum:
            raise fail(f"expected {words}")
        if not low <= v <= WHOLE_MAX:
            raise fail(f"expected a whole number from {low} to {WHOLE_MAX}")
        return v

    return check


def _number_at_least(minimum: float) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= minimum:
            raise fail(f"expected a number >= {minimum:g}")
        return float(v)

    return check


def _duration(positive: bool) -> Callable[[Any], float]:
    def check(v: Any) -> float:
        try:
            return parse_duration(v, allow_zero=not positive)
        except ValueError as exc:
            detail = str(exc).split(", got ")[0]
            if detail.startswith("expected a duration like") and positive:
                detail = f"expected {DURATION_EXPECTED}, greater than zero"
            raise fail(detail) from None

    return check


def text_check(nonempty: bool, numbers: bool = False) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if numbers and isinstance(v, int | float) and not isinstance(v, bool):
            return str(v)
        if not isinstance(v, str) or (nonempty and not v.strip()):
            raise fail("expected a non-empty string" if nonempty else
                       "expected a string or a number" if numbers else "expected a string")
        return v

    return check


def pattern_check(regex: re.Pattern[str], words: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if not isinstance(v, str) or not regex.fullmatch(v):
            raise fail(f"expected {words}")
        return v

    return check


def _env_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return str(v)
    if not isinstance(v, str):
        raise fail("expected a string (or a number) for an environment variable")
    return v


def _mapping(v: Any) -> Any:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise fail("expected a mapping (key: value lines)")
    return v


def _list_or_one(v: Any) -> Any:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def choice(enum: type[E]) -> Callable[[Any], E]:
    options = ", ".join(e.value for e in enum)

    def check(v: Any) -> E:
        try:
            return enum(v)
        except ValueError:
            import difflib

            guess = difflib.get_close_matches(v, [e.value for e in enum], n=1) \
                if isinstance(v, str) else []
            hint = f" (did you mean {guess[0]}?)" if guess else ""
            raise fail(f"expected one of {options}{hint}") from None

    return check


def _timezone(v: Any) -> str:
    if not isinstance(v, str):
        raise fail("expected an IANA time zone name like Europe/Paris or UTC")
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        import difflib
        import zoneinfo

        zones = sorted(zoneinfo.available_timezones())
        folded = {z.casefold(): z for z in zones}
        city = "/" + v.strip().replace(" ", "_").casefold()  # `Paris`, `new york`
        guess = ([folded[v.casefold()]] if v.casefold() in folded
                 else [z for z in zones if z.casefold().endswith(city)][:1]
                 or difflib.get_close_matches(v, zones, n=1))
        hint = f" (did you mean {guess[0]}?)" if guess else ""
        raise fail(f"expected an IANA time zone name like Europe/Paris or UTC{hint}") from None
    return v


def clock_value(v: Any) -> time:
    words = "expected a time of day as HH:MM (00:00 to 23:59)"
    if not isinstance(v, str) or not re.fullmatch(r"\d{1,2}:\d{2}", v):
        raise fail(words)
    try:
        return time.fromisoformat(v.zfill(5))
    except ValueError:
        raise fail(words) from None


def _schedule_datetime(end_of_day: bool) -> Callable[[Any], datetime]:
    """A schedule's `once`, `start` or `end`: a date or date-time read in the job's zone, or a
    date-time with an offset (`Z`, `+01:00`), which names that instant whatever the zone."""
    words = ("expected a date or date-time like 2026-01-01, 2026-01-01T06:00 (in the job's"
             " timezone) or 2026-01-01T06:00+01:00")

    def check(v: Any) -> datetime:
        if not isinstance(v, str):
            raise fail(words)
        try:
            if re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
                day = datetime.fromisoformat(v)
                # Inclusive ends: a bare end date keeps every firing of that day.
                return day + timedelta(days=1, microseconds=-1) if end_of_day else day
            dt = datetime.fromisoformat(v)
            if dt.tzinfo is not None:
                dt.astimezone(UTC)  # an instant past the ends of the calendar raises here
        except (ValueError, OverflowError):
            raise fail(words) from None
        return dt

    return check


def _date(v: Any) -> date:
    if not isinstance(v, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", v):
        raise fail("expected a date as YYYY-MM-DD")
    try:
        return date.fromisoformat(v)
    except ValueError:
        raise fail("expected a date as YYYY-MM-DD") from None


def _int_range(lo: int, hi: int, words: str, names: tuple[str, ...] = (),
               base: int = 0, extra: dict[str, int] | None = None) -> Callable[[Any], int]:
    def check(v: Any) -> int:
        if isinstance(v, str):
            key = v.strip().lower()
            if extra and key in extra:
                return extra[key]
            for i, name in enumerate(names):
                if key in (name, _FULL.get(name)):
                    return i + base
        elif not isinstance(v, bool) and isinstance(v, int) and lo <= v <= hi:
            return v
        raise fail(f"expected {words}")

    return check


_FULL = {
    "mon": "monday", "tue": "tuesday", "wed": "wednesday", "thu": "thursday", "fri": "friday",
    "sat": "saturday", "sun": "sunday", "jan": "january", "feb": "february", "mar": "march",
    "apr": "april", "jun": "june", "jul": "july", "aug": "august", "sep": "september",
    "oct": "october", "nov": "november", "dec": "december",
}

Whole = Annotated[int, PlainValidator(_whole(None))]
NonNegInt = Annotated[int, PlainValidator(_whole(0))]
PosInt = Annotated[int, PlainValidator(_whole(1))]
Backoff = Annotated[float, PlainValidator(_number_at_least(1))]
Duration = Annotated[float, PlainValidator(_duration(positive=False))]
Text = Annotated[str, PlainValidator(text_check(nonempty=False, numbers=True))]
NonEmptyText = Annotated[str, PlainValidator(text_check(nonempty=True))]
EnvValue = Annotated[str, PlainValidator(_env_value)]
JobName = Annotated[
    str,
    PlainValidator(pattern_check(JOB_NAME_RE, "a job name of lowercase letters, digits, _ and -")),
]
TaskName = Annotated[
    str,
    PlainValidator(pattern_check(
        TASK_NAME_RE, "a task name of letters, digits, _ and - (not starting with -)")),
]
AgentLabel = Annotated[str, PlainValidator(pattern_check(AGENT_LABEL_RE, AGENT_LABEL_WORDS))]
Clock = Annotated[time, PlainValidator(clock_value)]
Day = Annotated[date, PlainValidator(_date)]
Minute = Annotated[int, PlainValidator(_int_range(0, 59, "a minute from 0 to 59"))]
Hour = Annotated[int, PlainValidator(_int_range(0, 23, "an hour from 0 to 23"))]
# Weekdays by name only (0 is Sunday to cron, Monday to Python): the range admits no number.
Weekday = Annotated[int, PlainValidator(_int_range(
    0, -1, "a weekday: mon, tue, wed, thu, fri, sat or sun (or monday..sunday)", WEEKDAYS))]
Monthday = Annotated[int, PlainValidator(_int_range(
    1, 31, "a day of the month from 1 to 31, or last", extra={"last": -1}))]
Month = Annotated[int, PlainValidator(_int_range(
    1, 12, "a month from 1 to 12 or jan..dec", MONTHS, base=1))]
MappingIn = BeforeValidator(_mapping)
ListOrOne = BeforeValidator(_list_or_one)


def optional_check(check: Callable[[Any], T]) -> Callable[[Any], T | None]:
    def maybe(v: Any) -> T | None:
        return None if v is None else check(v)

    return maybe


def _list_of(words: str) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if v is None:
            return []
        if not isinstance(v, list):
            raise fail(f"expected {words}")
        return v

    return check


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise fail("expected true or false")
    return v


Bool = Annotated[bool, PlainValidator(_bool)]
OptPosInt = Annotated[int | None, PlainValidator(optional_check(_whole(1)))]
OptPosDuration = Annotated[float | None, PlainValidator(optional_check(_duration(positive=True)))]
OptText = Annotated[str | None, PlainValidator(optional_check(text_check(nonempty=False)))]
OptName = Annotated[str | None, PlainValidator(optional_check(text_check(nonempty=True)))]
OptTimeZone = Annotated[str | None, PlainValidator(optional_check(_timezone))]
OptStartAt = Annotated[datetime | None, PlainValidator(optional_check(_schedule_datetime(False)))]
OptEndAt = Annotated[datetime | None, PlainValidator(optional_check(_schedule_datetime(True)))]
ListOf = _list_of
CalendarName = Annotated[str, PlainValidator(pattern_check(
    JOB_NAME_RE, "a calendar name of lowercase letters, digits, _ and -"))]
OptCalendarName = Annotated[str | None, PlainValidator(optional_check(pattern_check(
    JOB_NAME_RE, "a calendar name of lowercase letters, digits, _ and -")))]
BusinessDay = Annotated[int | None, PlainValidator(optional_check(_int_range(
    -23, 23, "a business day of the month: 1..23, or -1..-23 counted from the end")))]
