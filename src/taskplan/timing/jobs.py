"""The firings of a whole job: all its schedules merged in time order (for `taskplan next` and
the scheduler)."""

from __future__ import annotations

import heapq
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from taskplan.model import JobSpec, ScheduleSpec
from taskplan.timing.schedule import Schedule, compile_schedule


def job_timezone(job: JobSpec, default_tz: str = "UTC") -> ZoneInfo:
    """The zone a job's schedules are read in: its own, else the configured default."""
    return ZoneInfo(job.timezone or default_tz)


def compile_job(job: JobSpec, default_tz: str = "UTC") -> list[Schedule]:
    """The job's enabled schedules, each with the job's exceptions and its own; none at all
    when the job itself is disabled (`enabled: false`)."""
    tz = job_timezone(job, default_tz)
    if not job.enabled:
        return []
    return [compile_schedule(s, tz, job.exceptions + s.exceptions)
            for s in job.schedules if s.enabled]


def next_firings(
    job: JobSpec, after: datetime, n: int, default_tz: str = "UTC"
) -> list[tuple[datetime, ScheduleSpec]]:
    """The job's next `n` firings strictly after `after`, across all its schedules.

    In time order; two schedules firing at the same instant both appear, the lower
    `ScheduleSpec.index` first. Datetimes are in the job's zone.
    """
    # Keyed by UTC: aware datetimes sharing a tzinfo compare as walls, which misorders the two
    # copies of a fall-back hour.
    heap: list[tuple[datetime, int, int, datetime]] = []
    schedules = compile_job(job, default_tz)
    for pos, schedule in enumerate(schedules):
        first = schedule.next_after(after)
        if first is not None:
            heap.append((first.astimezone(UTC), schedule.spec.index, pos, first))
    heapq.heapify(heap)
    out: list[tuple[datetime, ScheduleSpec]] = []
    while heap and len(out) < n:
        _, index, pos, when = heapq.heappop(heap)
        schedule = schedules[pos]
        out.append((when, schedule.spec))
        following = schedule.next_after(when)
        if following is not None:
            heapq.heappush(heap, (following.astimezone(UTC), index, pos, following))
    return out
