"""When a run's deadline falls, and how a run stands against it. Pure time maths."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from taskplan.model import Deadline

# Stored in runs.deadline_state by the checker: `pending` (a deadline counted from a start
# still to come), `at_risk` (the forecast said late, once), `missed` (passed unfinished).
PENDING, AT_RISK, MISSED = "pending", "at_risk", "missed"


def deadline_at(deadline: Deadline, zone: str, fired_at: float, started_at: float | None
                ) -> float | None:
    """The instant a run's deadline falls. `within` counts from the firing (`of: firing`,
    the default) or from the start (`of: start`; None while the run has not started).
    `finish_by` is the first such wall time, in its `timezone` else `zone`, at or after the
    firing; a wall time that a DST change skips falls at the same offset past the gap."""
    if deadline.within is not None:
        ref = fired_at if deadline.of == "firing" else started_at
        return None if ref is None else ref + deadline.within
    assert deadline.finish_by is not None
    tz = ZoneInfo(deadline.timezone or zone)
    fired = datetime.fromtimestamp(fired_at, tz)
    day = fired.date()
    for _ in range(3):
        at = datetime.combine(day, deadline.finish_by, tz)
        # Round-trip through UTC: a non-existent wall time comes back normalised.
        at = datetime.fromtimestamp(at.timestamp(), tz)
        if at.timestamp() >= fired_at:
            return at.timestamp()
        day += timedelta(days=1)
    raise AssertionError("a wall time occurs at least once in three days")


def standing(deadline: float | None, stored: str | None, state: str,
             finished_at: float | None, now: float) -> str:
    """How a run stands: `pending`, `on_track`, `at_risk`, `missed`; once ended, `met`
    (succeeded in time), `missed` (ended after it) or `not_met` (failed or cancelled before)."""
    if deadline is None:
        return PENDING
    if finished_at is not None and state in ("succeeded", "failed", "cancelled"):
        if finished_at > deadline:
            return MISSED
        return "met" if state == "succeeded" else "not_met"
    if stored == MISSED or now >= deadline:
        return MISSED
    return AT_RISK if stored == AT_RISK else "on_track"
