"""Definitions and records as frozen dataclasses, and the states of runs and task runs.

Nothing here does I/O. `spec` builds these from job files; `store` persists their plain-data form;
`engine` moves records between the states declared here.
"""

from __future__ import annotations

import re
from dataclasses import field
from datetime import date, datetime, time
from enum import StrEnum
from functools import cached_property
from typing import Any, Literal

from taskplan.dataclass import dataclass

# An agent label: `etl`, `gpu`, `host=db1.example.com`; no commas or spaces (they separate).
AGENT_LABEL_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/@+=-]{0,99}")
AGENT_LABEL_WORDS = ("an agent label of up to 100 letters, digits and _ . : / @ + = -,"
                     " starting with a letter, digit or _ (no commas or spaces)")


class TaskState(StrEnum):
    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class RunState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    STOPPING = "stopping"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Halt(StrEnum):
    """Why a run stopped starting tasks (`runs.halt`): its on_failure policy (`stop`, `cancel`,
    `finish_stage`) or a user's `stop`/`cancel` command."""

    STOP = "stop"
    CANCEL = "cancel"
    FINISH_STAGE = "finish_stage"
    USER_STOP = "user_stop"
    USER_CANCEL = "user_cancel"


class TaskRunKind(StrEnum):
    """What a task run or a graph node is. `task`, `foreach` and `barrier` are stored in
    `task_runs.kind` (an item is a `task` row with a parent); `item` and `job` (a task that
    starts a child run) are how status, forecasts and the console name them."""

    TASK = "task"
    FOREACH = "foreach"
    ITEM = "item"
    JOB = "job"
    BARRIER = "barrier"


TERMINAL_RUN_STATES: frozenset[RunState] = frozenset(
    {RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED}
)
# A task run in one of these states has ended: no further attempt comes (but by `retry`).
TERMINAL_TASK_STATES: frozenset[TaskState] = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.UPSTREAM_FAILED, TaskState.SKIPPED,
     TaskState.CANCELLED}
)
# Upstream end states that count as "failed" for trigger rules.
FAILED_LIKE: frozenset[TaskState] = frozenset({TaskState.FAILED, TaskState.UPSTREAM_FAILED})

class TriggerRule(StrEnum):
    ALL_SUCCESS = "all_success"
    ALL_DONE = "all_done"
    ONE_FAILED = "one_failed"


class OnFailure(StrEnum):
    CONTINUE = "continue"
    STOP = "stop"
    FINISH_STAGE = "finish_stage"
    CANCEL = "cancel"


class OnMisfire(StrEnum):
    SKIP = "skip"
    RUN_ONCE = "run_once"
    RUN_ALL = "run_all"


class OnOverlap(StrEnum):
    SKIP = "skip"
    QUEUE = "queue"
    ALLOW = "allow"


TaskKind = Literal["sql", "shell", "python", "job"]


@dataclass(frozen=True)
class Foreach:
    """Where a foreach task's items come from: exactly one of sql, values, from_task."""

    sql: str | None = None
    connection: str | None = None
    values: tuple[Any, ...] | None = None
    from_task: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    kind: TaskKind
    # sql: the statement text; shell: a string (sh -c) or an argv tuple; python: "module:function";
    # job: the name of the job to start.
    command: str | tuple[str, ...]
    depends_on: tuple[str, ...] = ()
    stage: int | None = None
    trigger: TriggerRule = TriggerRule.ALL_SUCCESS
    retries: int = 0
    retry_delay: float = 0.0  # seconds before the first retry
    retry_backoff: float = 2.0  # multiplier applied after each failed attempt
    timeout: float | None = None  # seconds
    priority: int = 0
    pool: str | None = None
    connection: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    foreach: Foreach | None = None
    params: dict[str, Any] = field(default_factory=dict)  # for `job` tasks: the child's params
    # Labels an agent must all have to claim this task (the job's and the task's own), sorted.
    agent_labels: tuple[str, ...] = ()
    enabled: bool = True  # False: every run records this task `skipped` at creation
    # python tasks: call the function on the agent's own thread (fast, but cannot be killed)
    in_process: bool = False


@dataclass(frozen=True)
class Calendar:
    """The pgAgent calendar form. Empty tuples mean "any". Also the shape of an exception."""

    at: tuple[time, ...] = ()
    minutes: tuple[int, ...] = ()
    hours: tuple[int, ...] = ()
    weekdays: tuple[int, ...] = ()  # 0 = Monday .. 6 = Sunday
    monthdays: tuple[int, ...] = ()  # 1..31; -1 means the last day of the month
    months: tuple[int, ...] = ()  # 1..12
    dates: tuple[date, ...] = ()  # exceptions only: whole local days
    closed_on: str | None = None  # exceptions only: the closed days of this named calendar


class Shift(StrEnum):
    """What a schedule bound to a business calendar does with a firing on a closed day."""

    SKIP = "skip"
    NEXT = "next"
    PREVIOUS = "previous"


@dataclass(frozen=True)
class HolidaySource:
    """Public holidays of a country (ISO 3166 code) and optional subdivision, as the
    `holidays` package knows them."""

    country: str
    subdiv: str | None = None


@dataclass(frozen=True)
class BusinessCalendar:
    """A named calendar of closed days (weekends, public holidays, explicit dates), applied
    from its own file and versioned like a job. Every other day is a business day."""

    name: str
    description: str = ""
    holidays: tuple[HolidaySource, ...] = ()
    dates: tuple[date, ...] = ()
    weekends: tuple[int, ...] = (5, 6)  # 0 = Monday .. 6 = Sunday
    definition: dict[str, Any] = field(default_factory=dict, compare=False)
    source_path: str = ""


@dataclass(frozen=True)
class ScheduleSpec:
    """One entry of `schedules:`; exactly one of cron, calendar, every, once is set.

    Datetimes are naive and read in the job's timezone.
    """

    index: int
    name: str | None = None
    cron: str | None = None
    calendar: Calendar | None = None
    every: float | None = None  # seconds
    once: datetime | None = None
    start: datetime | None = None
    end: datetime | None = None
    max_runs: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True  # False: the schedule never fires
    exceptions: tuple[Calendar, ...] = ()  # this schedule's own, on top of the job's
    # Bound to a named business calendar: fire on its business days only, moving or skipping
    # firings that fall on a closed day (`shift`), or on the Nth business day of each month.
    business_calendar: str | None = None
    business_day: int | None = None  # 1 = first, -1 = last business day of the month
    shift: Shift = Shift.SKIP

    @property
    def key(self) -> str:
        """What identifies this schedule in the output of `next` and in firing rows."""
        return self.name if self.name is not None else str(self.index)


@dataclass(frozen=True)
class TriggerSpec:
    index: int
    after: tuple[str, ...]
    status: Literal["succeeded", "finished"] = "succeeded"
    within: float | None = None  # seconds
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Deadline:
    """`deadline:` of a job: exactly one of `finish_by` (a wall time in `timezone`, else the
    job's) or `within` (seconds after the firing, or after the start with `of: start`)."""

    finish_by: time | None = None
    timezone: str | None = None
    within: float | None = None
    of: Literal["firing", "start"] = "firing"


@dataclass(frozen=True)
class JobSpec:
    name: str
    tasks: tuple[TaskSpec, ...]
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    connections: dict[str, str] = field(default_factory=dict)  # ${VAR} left unexpanded
    on_failure: OnFailure = OnFailure.CONTINUE
    max_parallel: int | None = None
    priority: int = 0
    pools: dict[str, int] = field(default_factory=dict)
    timezone: str | None = None
    schedules: tuple[ScheduleSpec, ...] = ()
    exceptions: tuple[Calendar, ...] = ()
    on_misfire: OnMisfire = OnMisfire.RUN_ONCE
    on_overlap: OnOverlap = OnOverlap.SKIP
    triggers: tuple[TriggerSpec, ...] = ()
    agent_labels: tuple[str, ...] = ()  # required of every task's agent
    enabled: bool = True  # False: no scheduled or triggered runs; manual runs still allowed
    tags: tuple[str, ...] = ()
    deadline: Deadline | None = None
    # The plain-data form of the file (what the store keeps and hashes) and where it came from.
    definition: dict[str, Any] = field(default_factory=dict, compare=False)
    source_path: str = ""
    base_dir: str = ""

    def task(self, name: str) -> TaskSpec:
        return self._by_name[name]

    @cached_property
    def _by_name(self) -> dict[str, TaskSpec]:
        # Built on first use (a cached_property writes the instance's __dict__ directly, so a
        # frozen class allows it): callers look up many tasks of a large job.
        return {t.name: t for t in self.tasks}
