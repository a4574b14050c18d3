"""Wall-clock time versus real instants in one time zone.

A *wall* is a naive datetime read on the clocks of a zone; an *instant* is an aware datetime in
UTC. Most walls name exactly one instant. Around a DST change a wall may name none (the gap of a
spring-forward) or two (the repeated hour of a fall-back). The policy of docs/schedules.md is
carried by `instant_of`: a wall in a gap is shifted forward by the gap, a repeated wall is its
first occurrence. Both come out of PEP 495's `fold=0` reading, which uses the offset in force
*before* the change.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import Enum
from zoneinfo import ZoneInfo

# Transitions further apart than this from `after` cannot move a wall across it. The largest gap
# on record is a whole day (Pacific/Apia skipped 30 December 2011).
_REACH = timedelta(hours=25)


class WallKind(Enum):
    PLAIN = "plain"  # exactly one instant
    GAP = "gap"  # no instant: skipped by a spring-forward
    REPEATED = "repeated"  # two instants: shown twice by a fall-back


def require_aware(dt: datetime, what: str = "datetime") -> datetime:
    """The instant as UTC; refuse naive input, which would silently mean the host's zone."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got naive {dt.isoformat()}")
    return dt.astimezone(UTC)


def instant_of(wall: datetime, tz: ZoneInfo) -> datetime:
    """The instant a wall fires at under the DST policy (gap: shifted forward; repeat: first)."""
    return wall.replace(tzinfo=tz, fold=0).astimezone(UTC)


def spec_instant(dt: datetime, tz: ZoneInfo) -> datetime:
    """A datetime from a job file: naive ones are walls in `tz`; aware ones are kept as given."""
    if dt.tzinfo is not None and dt.utcoffset() is not None:
        return dt.astimezone(UTC)
    return instant_of(dt, tz)


def second_instant_of(wall: datetime, tz: ZoneInfo) -> datetime:
    """The later of the two instants of a repeated wall (meaningless for other kinds)."""
    return wall.replace(tzinfo=tz, fold=1).astimezone(UTC)


def wall_of(instant: datetime, tz: ZoneInfo) -> datetime:
    """What the clocks of `tz` show at `instant`."""
    return instant.astimezone(tz).replace(tzinfo=None, fold=0)


def classify(wall: datetime, tz: ZoneInfo) -> WallKind:
    early = wall.replace(tzinfo=tz, fold=0)
    late = wall.replace(tzinfo=tz, fold=1)
    if early.utcoffset() == late.utcoffset():
        return WallKind.PLAIN
    # zoneinfo gives a gap wall two different offsets as well; only a real wall round-trips.
    if wall_of(early.astimezone(UTC), tz) != wall:
        return WallKind.GAP
    return WallKind.REPEATED


def earliest_wall(instant: datetime, tz: ZoneInfo) -> datetime:
    """A wall no later than any wall whose instant (either occurrence) is after `instant`.

    Near a spring-forward, walls of the gap map to instants after the change although they read
    earlier than the clocks do then; near a fall-back, second occurrences read earlier than the
    first. Reading `instant` with the smallest offset in force around it covers both.
    """
    offsets = []
    for step in (-_REACH, timedelta(0), _REACH):
        try:
            off = (instant + step).astimezone(tz).utcoffset()
        except OverflowError:  # at the ends of datetime's range
            continue
        assert off is not None
        offsets.append(off)
    return (instant + min(offsets)).replace(tzinfo=None)
