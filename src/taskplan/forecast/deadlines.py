"""When a run's deadline falls, and how a run stands against it. Pure time maths."""

from __future__ import annotations

import math
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
    `finish_by` is the first instant at or after the firing at which the clocks of its
    `timezone` (else `zone`) read that wall time: in a fall-back's repeated hour either
    occurrence may be it; a wall time that a spring-forward skips falls just after the gap."""
    if deadline.within is not None:
        ref = fired_at if deadline.of == "firing" else started_at
        return None if ref is None else ref + deadline.within
    assert deadline.finish_by is not None
    tz = ZoneInfo(deadline.timezone or zone)
    day = datetime.fromtimestamp(fired_at, tz).date()
    for _ in range(3):
        for at in _instants_of(datetime.combine(day, deadline.finish_by), tz):
            if at >= fired_at:
                return at
        day += timedelta(days=1)
    raise AssertionError("a wall time occurs at least once in three days")


def _instants_of(wall: datetime, tz: ZoneInfo) -> list[float]:
    """When the clocks of `tz` read the naive `wall`, in time order: once; twice in a
    fall-back's repeated hour; for a wall a spring-forward skips, the end of the gap (the first
    instant they read past it)."""
    # PEP 495: fold=0 reads a wall with the offset in force before a change, fold=1 after.
    early = wall.replace(tzinfo=tz, fold=0).timestamp()
    late = wall.replace(tzinfo=tz, fold=1).timestamp()
    if early == late:
        return [early]
    if early < late:
        return [early, late]
    # A gap: `late` is before the change (the clocks read `wall` minus the gap), `early` after
    # it (plus the gap). The change itself is the first second the clocks read `wall` or later.
    lo, hi = math.floor(late), math.ceil(early)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return [float(hi)]


def standing(deadline: float | None, stored: str | None, state: str,
             finished_at: float | None, now: float) -> str:
    """How a run stands: `pending`, `on_track`, `at_risk`, `missed`; once ended, `met`
    (succeeded in time), `missed` (ended after it) or `not_met` (failed or cancelled before,
    or before it started when the deadline counts from the start)."""
    ended = finished_at is not None and state in ("succeeded", "failed", "cancelled")
    if deadline is None:
        return "not_met" if ended else PENDING
    if ended:
        assert finished_at is not None
        if finished_at > deadline:
            return MISSED
        return "met" if state == "succeeded" else "not_met"
    if stored == MISSED or now >= deadline:
        return MISSED
    return AT_RISK if stored == AT_RISK else "on_track"
