"""From matching wall-clock times to firing instants, under the DST policy.

Cron and calendar schedules name wall-clock times ("02:30 every weekday"). They come in two modes:

* **wall-clock** (the default): every listed wall time fires once. A time in a spring-forward gap
  fires at the shifted instant (02:30 -> 03:30 CEST); a time repeated by a fall-back fires at its
  first occurrence only.
* **every hour**: a schedule whose times cover all 24 hours of the day (cron hour field `*`,
  `@hourly`, a calendar with `minutes` but no `hours`) is a sub-daily cadence, so it follows real
  time: it fires at each real instant whose wall time matches. During a fall-back it fires in
  both copies of the repeated hour; in a spring-forward gap nothing exists to match, and nothing
  is shifted (the shifted times would land on the hour after the gap, which fires anyway).

Either way firings strictly increase and no instant fires twice.

The walls come from a `NextWall` function (cronsim or the calendar matcher), asked only from
around `after`: the cost of a query does not depend on how long ago the schedule started.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from taskplan.timing.zones import (
    WallKind,
    classify,
    earliest_wall,
    instant_of,
    second_instant_of,
)

# The first matching wall strictly after the given one, or None if there is none.
NextWall = Callable[[datetime], datetime | None]

# Enough for a minutely schedule to cross the longest gap on record (a day) many times over;
# it only guards against a wall source that matches nothing but gap walls.
_SCAN_LIMIT = 100_000


def _instants(wall: datetime, kind: WallKind, tz: ZoneInfo, every_hour: bool) -> list[datetime]:
    if kind is WallKind.PLAIN:
        return [instant_of(wall, tz)]
    if kind is WallKind.REPEATED:
        first = instant_of(wall, tz)
        return [first, second_instant_of(wall, tz)] if every_hour else [first]
    return [] if every_hour else [instant_of(wall, tz)]


def next_from_walls(
    next_wall: NextWall, tz: ZoneInfo, after: datetime, every_hour: bool
) -> tuple[datetime, datetime] | None:
    """The first firing strictly after the UTC instant `after`, as (instant, listed wall)."""
    # Walls are visited in wall order, which differs from instant order only around a DST
    # change (gap walls land after the change, second occurrences after the first ones). The
    # first PLAIN wall past `after` bounds everything later, so the search stops there.
    wall: datetime | None = earliest_wall(after, tz) - timedelta(minutes=1)
    best: tuple[datetime, datetime] | None = None
    for _ in range(_SCAN_LIMIT):
        assert wall is not None
        wall = next_wall(wall)
        if wall is None:
            break
        kind = classify(wall, tz)
        for instant in _instants(wall, kind, tz, every_hour):
            if instant > after and (best is None or instant < best[0]):
                best = (instant, wall)
        if kind is WallKind.PLAIN and instant_of(wall, tz) > after:
            break
    return best
