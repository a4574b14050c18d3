"""The pydantic shape of a job file, validated piece by piece (header, each task, each schedule)
so one bad piece never hides the problems of another.

Rules that tie keys together ("exactly one of sql/shell/python/job") live in checks.py, on the
raw mappings, so they are reported even when a field of the same task is also wrong.
"""

from __future__ import annotations

from datetime import datetime, time
from typing import Annotated, Any, Literal

from cronsim import CronSim, CronSimError
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    model_validator,
)

from taskplan.model import OnFailure, OnMisfire, OnOverlap, Shift, TriggerRule
from taskplan.notify.rules import (
    CHANNEL_KINDS,
    EVENTS,
    MAX_TIMEOUT,
    TIMEOUT_EXPECTED,
    address_problem,
    apprise_problem,
    command_problem,
    webhook_problem,
)
from taskplan.spec import fields as f
from taskplan.timing.cron import CRON_ALIASES

TASK_KINDS = ("sql", "shell", "python", "job")
CALENDAR_KEYS = ("at", "minutes", "hours", "weekdays", "monthdays", "months")


def _cron(v: Any) -> str | None:
    words = (
        "expected a cron expression of 5 fields (minute hour day-of-month month day-of-week)"
        " or one of " + ", ".join(CRON_ALIASES)
    )
    if v is None:
        return None
    if not isinstance(v, str):
        raise f.fail(words)
    expr = CRON_ALIASES.get(v.strip().lower(), " ".join(v.split()))
    if expr.startswith("@") or len(expr.split()) != 5:
        raise f.fail(words)
    try:
        CronSim(expr, datetime.now())
    except CronSimError as exc:
        raise f.fail(f"expected a valid cron expression ({exc})") from None
    return expr


def _shell_kind(v: Any) -> str:
    return "argv" if isinstance(v, list) else "command"


def _argv(v: Any) -> Any:
    if isinstance(v, list) and not v:
        raise f.fail("expected a non-empty list of arguments")
    return v


def _nonempty(v: list[Any]) -> list[Any]:
    if not v:
        raise f.fail("expected at least one job name")
    return v


def _nonempty_events(v: list[Any]) -> list[Any]:
    if not v:
        raise f.fail("expected at least one event")
    return v


def _status(v: Any) -> str:
    if v not in ("succeeded", "finished"):
        raise f.fail("expected one of succeeded, finished")
    return str(v)


Mapping = Annotated[dict[str, Any], f.MappingIn]
Cron = Annotated[str | None, PlainValidator(_cron)]
ShellArg = Annotated[str, PlainValidator(f.text_check(nonempty=False, numbers=True))]
ShellCommand = Annotated[
    Annotated[str, PlainValidator(f.text_check(nonempty=True)), Tag("command")]
    | Annotated[list[ShellArg], BeforeValidator(_argv), Tag("argv")],
    Discriminator(_shell_kind),
]
Trigger = Annotated[TriggerRule, PlainValidator(f.choice(TriggerRule))]


class StrictModel(BaseModel):
    # defer_build: a model's validator is built when it first validates, so a file without
    # schedules, triggers or calendars never pays for building theirs.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False,
                              defer_build=True)


def _deadline_of(v: Any) -> str:
    if v not in ("firing", "start"):
        raise f.fail("expected one of firing, start")
    return str(v)


class DeadlineModel(StrictModel):
    """`deadline:` (exactly one of finish_by, within: checks.deadline_shape)."""

    finish_by: Annotated[time | None, PlainValidator(f.optional_check(f.clock_value))] = None
    timezone: f.OptTimeZone = None
    within: f.OptPosDuration = None
    of: Annotated[Literal["firing", "start"], PlainValidator(_deadline_of)] = "firing"


class Header(StrictModel):
    job: f.JobName
    description: f.Text = ""
    params: Mapping = Field(default_factory=dict)
    connections: Annotated[dict[str, f.NonEmptyText], f.MappingIn] = Field(default_factory=dict)
    defaults: Mapping = Field(default_factory=dict)
    on_failure: Annotated[OnFailure, PlainValidator(f.choice(OnFailure))] = OnFailure.CONTINUE
    max_parallel: f.OptPosInt = None
    priority: f.Whole = 0
    pools: Annotated[dict[str, f.PosInt], f.MappingIn] = Field(default_factory=dict)
    timezone: f.OptTimeZone = None
    schedules: Annotated[list[Any], PlainValidator(f.ListOf("a list of schedules"))] = Field(
        default_factory=list)
    exceptions: Annotated[list[Any], PlainValidator(f.ListOf("a list of exceptions"))] = Field(
        default_factory=list)
    on_misfire: Annotated[OnMisfire, PlainValidator(f.choice(OnMisfire))] = OnMisfire.RUN_ONCE
    on_overlap: Annotated[OnOverlap, PlainValidator(f.choice(OnOverlap))] = OnOverlap.SKIP
    triggers: Annotated[list[Any], PlainValidator(f.ListOf("a list of triggers"))] = Field(
        default_factory=list)
    agent_labels: Annotated[list[f.AgentLabel], f.ListOrOne] = Field(default_factory=list)
    enabled: f.Bool = True
    tags: Annotated[list[f.NonEmptyText], f.ListOrOne] = Field(default_factory=list)
    deadline: DeadlineModel | None = None
    # None (no key) means "taskplan.toml's defaults"; [] means no notifications at all.
    notify: Annotated[list[Any] | None, PlainValidator(
        f.optional_check(f.ListOf("a list of notification rules")))] = None
    tasks: Annotated[dict[f.TaskName, Any], f.MappingIn]


class Settings(StrictModel):
    """What `defaults:` may set, and every task may override."""

    connection: f.OptName = None
    retries: f.NonNegInt = 0
    retry_delay: f.Duration = 0.0
    retry_backoff: f.Backoff = 2.0
    timeout: f.OptPosDuration = None
    priority: f.Whole = 0
    pool: f.OptName = None
    env: Annotated[dict[str, f.EnvValue], f.MappingIn] = Field(default_factory=dict)
    cwd: f.OptText = None
    trigger: Trigger = TriggerRule.ALL_SUCCESS
    in_process: f.Bool = False


class ForeachModel(StrictModel):
    sql: f.OptName = None
    connection: f.OptName = None
    values: Annotated[list[Any] | None,
                      PlainValidator(f.optional_check(f.ListOf("a list of values")))] = None
    from_: Annotated[str | None, Field(alias="from"), PlainValidator(
        f.optional_check(f.pattern_check(f.TASK_NAME_RE, "the name of an upstream task")))] = None


class TaskModel(Settings):
    sql: f.OptName = None
    shell: ShellCommand | None = None
    python: Annotated[str | None, PlainValidator(f.optional_check(f.pattern_check(
        f.PYTHON_REF_RE, "a callable as module.path:function")))] = None
    job: Annotated[str | None, PlainValidator(f.optional_check(f.pattern_check(
        f.JOB_NAME_RE, "a job name of lowercase letters, digits, _ and -")))] = None
    depends_on: Annotated[list[f.TaskName], f.ListOrOne] = Field(default_factory=list)
    stage: f.OptPosInt = None
    foreach: ForeachModel | None = None
    params: Mapping = Field(default_factory=dict)
    agent_labels: Annotated[list[f.AgentLabel], f.ListOrOne] = Field(default_factory=list)
    enabled: f.Bool = True


class CalendarModel(StrictModel):
    at: Annotated[list[f.Clock], f.ListOrOne] = Field(default_factory=list)
    minutes: Annotated[list[f.Minute], f.ListOrOne] = Field(default_factory=list)
    hours: Annotated[list[f.Hour], f.ListOrOne] = Field(default_factory=list)
    weekdays: Annotated[list[f.Weekday], f.ListOrOne] = Field(default_factory=list)
    monthdays: Annotated[list[f.Monthday], f.ListOrOne] = Field(default_factory=list)
    months: Annotated[list[f.Month], f.ListOrOne] = Field(default_factory=list)


class ScheduleModel(CalendarModel):
    name: f.OptName = None
    calendar: f.OptCalendarName = None
    business_day: f.BusinessDay = None
    shift: Annotated[Shift, PlainValidator(f.choice(Shift))] = Shift.SKIP
    cron: Cron = None
    every: f.OptPosDuration = None
    once: f.OptStartAt = None
    start: f.OptStartAt = None
    end: f.OptEndAt = None
    max_runs: f.OptPosInt = None
    params: Mapping = Field(default_factory=dict)
    enabled: f.Bool = True
    # Checked entry by entry by the loader, like the job's own `exceptions:`.
    exceptions: Annotated[list[Any], PlainValidator(f.ListOf("a list of exceptions"))] = Field(
        default_factory=list)


class ExceptionModel(CalendarModel):
    dates: Annotated[list[f.Day], f.ListOrOne] = Field(default_factory=list)
    calendar: f.OptCalendarName = None


class HolidaysModel(StrictModel):
    country: Annotated[str, PlainValidator(f.pattern_check(
        f.COUNTRY_RE, "a country as an ISO 3166 code such as GB, US or FR"))]
    subdiv: f.OptName = None


class CalendarFile(StrictModel):
    """A business calendar file: the days it is closed."""

    calendar: f.CalendarName
    description: f.Text = ""
    holidays: Annotated[list[HolidaysModel], f.ListOrOne] = Field(default_factory=list)
    dates: Annotated[list[f.Day], f.ListOrOne] = Field(default_factory=list)
    weekends: Annotated[list[f.Weekday], f.ListOrOne] = [5, 6]


class TriggerModel(StrictModel):
    after: Annotated[list[f.JobName], f.ListOrOne, AfterValidator(_nonempty)]
    status: Annotated[Literal["succeeded", "finished"], PlainValidator(_status)] = "succeeded"
    within: f.OptPosDuration = None
    params: Mapping = Field(default_factory=dict)


def _event(v: Any) -> str:
    if v not in EVENTS:
        raise f.fail("expected one of " + ", ".join(EVENTS))
    return str(v)


def _http_url(v: Any) -> str | None:
    if v is None:
        return None
    if (problem := webhook_problem(v)) is not None:
        raise f.fail(problem)
    return str(v)


def _address(v: Any) -> str:
    if (problem := address_problem(v)) is not None:
        raise f.fail(problem)
    return str(v)


def _notify_command(v: Any) -> Any:
    if (problem := command_problem(v)) is not None:
        raise f.fail(problem)
    return v


def _notify_timeout(v: float | None) -> float | None:
    if v is not None and v > MAX_TIMEOUT:
        raise f.fail(TIMEOUT_EXPECTED)
    return v


def _service_url(v: Any) -> str | None:
    if v is None:
        return None
    if (problem := apprise_problem(v)) is not None:
        raise f.fail(problem)
    return str(v)


class NotifyModel(StrictModel):
    """One entry of `notify:` (job file) or `[[notify]]` (taskplan.toml): events -> a channel."""

    on: Annotated[list[Annotated[str, PlainValidator(_event)]], f.ListOrOne,
                  AfterValidator(_nonempty_events)]
    webhook: Annotated[str | None, PlainValidator(_http_url)] = None
    email: Annotated[list[Annotated[str, PlainValidator(_address)]] | None,
                     BeforeValidator(lambda v: v if v is None or isinstance(v, list) else [v])
                     ] = None
    command: Annotated[ShellCommand | None, AfterValidator(_notify_command)] = None
    apprise: Annotated[str | None, PlainValidator(_service_url)] = None
    secret: f.OptName = None
    name: f.OptName = None
    timeout: Annotated[f.OptPosDuration, AfterValidator(_notify_timeout)] = None

    @model_validator(mode="after")
    def _one_channel(self) -> NotifyModel:
        given = [k for k in CHANNEL_KINDS if getattr(self, k) is not None]
        if len(given) != 1:
            raise f.fail("expected exactly one channel: " + ", ".join(CHANNEL_KINDS)
                         + (f" (found {', '.join(given)})" if given else ""))
        if self.secret is not None and given != ["webhook"]:
            raise f.fail("expected `secret` only with a webhook (it signs the request)")
        if self.email is not None and not self.email:
            raise f.fail("expected at least one e-mail address")
        return self


def build_validators() -> None:
    """Build every job-file model's validator now instead of at its first use.

    For daemons (agents, the scheduler, the console): their first claim of a run would
    otherwise pay for it (40-80 ms) in the middle of that run; a one-shot command keeps the
    deferred build and builds only what its file uses.
    """
    todo: list[type[BaseModel]] = [StrictModel]
    while todo:
        model = todo.pop()
        todo.extend(model.__subclasses__())
        if model is not StrictModel:
            model.model_rebuild(force=True)
