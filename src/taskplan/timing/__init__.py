"""Pure time maths for schedules: no I/O and no clock; every function takes its instants.

Modules: `zones` (walls vs instants, the DST policy), `walls` (wall-clock schedules across DST),
`cron`, `calendar` (pgAgent form and exceptions), `sources` (per kind), `schedule` (bounds,
max_runs, exceptions), `jobs` (a job's schedules merged), `checks` (for the loader).
"""

from taskplan.timing.business import ClosedDays, closed_days_of
from taskplan.timing.checks import (
    check_calendar,
    check_cron,
    check_exception,
    check_schedule,
    check_timezone,
)
from taskplan.timing.jobs import (
    calendar_names,
    calendar_skips,
    compile_job,
    job_timezone,
    next_firings,
    next_with_skips,
    without_schedules,
)
from taskplan.timing.schedule import Schedule, compile_schedule, count_firings_between, firings

__all__ = [
    "ClosedDays",
    "Schedule",
    "calendar_names",
    "calendar_skips",
    "closed_days_of",
    "check_calendar",
    "check_cron",
    "check_exception",
    "check_schedule",
    "check_timezone",
    "compile_job",
    "compile_schedule",
    "count_firings_between",
    "firings",
    "job_timezone",
    "next_firings",
    "next_with_skips",
    "without_schedules",
]
