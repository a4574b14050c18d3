"""Cron expressions: validation and the wall-clock times they match.

Accepted: the five standard fields (minute hour day-of-month month day-of-week), names for months
and days, `L` for the last day of the month (and cronsim's `LW`, `5L`, `1#2`), and the macros
@yearly @annually @monthly @weekly @daily @midnight @hourly. As in Vixie/Debian cron, when both
day-of-month and day-of-week are restricted a day matching either one matches.

Matching is delegated to cronsim, but run on *naive* wall times: cronsim's own DST handling
(Debian's, which moves a gap time to the end of the gap rather than by the gap) is not used; the
policy lives in `walls`. An expression whose hour field covers all 24 hours is an every-hour
cadence and follows real time across DST changes (see `walls`).
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache

from cronsim import CronSim, CronSimError

# The @names cron accepts, as the 5-field expressions they stand for.
CRON_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_PROBE = datetime(2000, 1, 1)


def expand(expr: str) -> str:
    """The five-field form of `expr` (macros replaced, blanks normalised)."""
    text = " ".join(expr.split())
    return CRON_ALIASES.get(text.lower(), text)


def check_cron(expr: str) -> str | None:
    """Why `expr` is not a valid cron expression, or None if it is."""
    text = expand(expr)
    if not text:
        return "empty cron expression"
    if text.startswith("@"):
        known = ", ".join(sorted(CRON_ALIASES))
        return f"unknown cron macro {text.split()[0]!r} (expected one of {known})"
    fields = text.split()
    if len(fields) != 5:
        return (
            f"cron expression {expr!r} has {len(fields)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week)"
        )
    try:
        _parse(text)
    except (CronSimError, ValueError, LookupError) as exc:  # cronsim means CronSimError only
        if (fields[3] != "*" and _parses(" ".join([*fields[:3], "*", fields[4]]))
                and _parses(" ".join([*fields[:2], "1", *fields[3:]]))):
            # cronsim's "Bad day-of-month" for 30 February reads as a typo in the day field.
            return (f"{expr!r} never fires: no month of {fields[3]!r} has day-of-month"
                    f" {fields[2]!r}")
        return f"bad cron expression {expr!r}: {exc}"
    return None


def _parses(text: str) -> bool:
    try:
        _parse(text)
    except (CronSimError, ValueError, LookupError):
        return False
    return True


@lru_cache(maxsize=512)
def _parse(text: str) -> CronSim:
    return CronSim(text, _PROBE)


class CronWalls:
    """The wall times matched by one (valid) cron expression."""

    def __init__(self, expr: str) -> None:
        problem = check_cron(expr)
        if problem is not None:
            raise ValueError(problem)
        self.expr = expand(expr)
        self.every_hour = _parse(self.expr).hours == set(range(24))

    def day_matches(self, day: date) -> bool:
        parsed = _parse(self.expr)
        match_day = getattr(parsed, "match_day", None)
        if match_day is None:  # an older cronsim: claim every day, which is merely slower
            return True
        return day.month in parsed.months and bool(match_day(day))

    def next_wall(self, wall: datetime) -> datetime | None:
        # cronsim ticks one second before matching, so its first result is strictly later.
        # It gives up (StopIteration) after 50 years without a match.
        return next(CronSim(self.expr, wall), None)
