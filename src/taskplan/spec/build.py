"""Turn validated schema pieces into the frozen model dataclasses other layers use."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskplan.model import (
    BusinessCalendar,
    Calendar,
    Deadline,
    Foreach,
    HolidaySource,
    JobSpec,
    ScheduleSpec,
    TaskKind,
    TaskSpec,
    TriggerSpec,
)
from taskplan.spec.schema import (
    CALENDAR_KEYS,
    CalendarFile,
    CalendarModel,
    ExceptionModel,
    Header,
    ScheduleModel,
    Settings,
    TaskModel,
    TriggerModel,
)

_INHERITED = ("retries", "retry_delay", "retry_backoff", "timeout", "priority", "pool", "cwd",
              "trigger", "in_process")


def task(name: str, t: TaskModel, defaults: Settings, job_labels: tuple[str, ...] = ()
         ) -> TaskSpec:
    own = t.model_fields_set  # what the task sets itself; the rest comes from defaults:

    def pick(key: str) -> Any:
        return getattr(t if key in own else defaults, key)

    kind: TaskKind
    command: str | tuple[str, ...]
    if t.sql is not None:
        kind, command = "sql", t.sql
    elif t.shell is not None:
        kind, command = "shell", t.shell if isinstance(t.shell, str) else tuple(t.shell)
    elif t.python is not None:
        kind, command = "python", t.python
    else:
        assert t.job is not None
        kind, command = "job", t.job
    connection = pick("connection") if kind == "sql" else None
    foreach = None
    if t.foreach is not None:
        fe = t.foreach
        fe_conn = None
        if fe.sql is not None:
            fe_conn = fe.connection or connection or defaults.connection
        foreach = Foreach(
            sql=fe.sql,
            connection=fe_conn,
            values=tuple(fe.values) if fe.values is not None else None,
            from_task=fe.from_,
        )
    settings = {key: pick(key) for key in _INHERITED}
    return TaskSpec(
        name=name,
        kind=kind,
        command=command,
        depends_on=tuple(dict.fromkeys(t.depends_on)),
        stage=t.stage,
        connection=connection,
        env={**defaults.env, **t.env},
        foreach=foreach,
        params=dict(t.params) if kind == "job" else {},
        agent_labels=tuple(sorted({*job_labels, *t.agent_labels})),
        enabled=t.enabled,
        **settings,
    )


def calendar(c: CalendarModel) -> Calendar:
    dates = tuple(sorted(set(c.dates))) if isinstance(c, ExceptionModel) else ()
    closed_on = c.calendar if isinstance(c, ExceptionModel) else None
    return Calendar(
        closed_on=closed_on,
        at=tuple(sorted(set(c.at))),
        minutes=tuple(sorted(set(c.minutes))),
        hours=tuple(sorted(set(c.hours))),
        weekdays=tuple(sorted(set(c.weekdays))),
        monthdays=tuple(sorted(set(c.monthdays))),
        months=tuple(sorted(set(c.months))),
        dates=dates,
    )


def schedule(index: int, s: ScheduleModel,
             exceptions: list[ExceptionModel] | None = None) -> ScheduleSpec:
    is_calendar = s.business_day is not None or any(
        k in s.model_fields_set for k in CALENDAR_KEYS)
    return ScheduleSpec(
        business_calendar=s.calendar,
        business_day=s.business_day,
        shift=s.shift,
        index=index,
        name=s.name,
        cron=s.cron,
        calendar=calendar(s) if is_calendar else None,
        every=s.every,
        once=s.once,
        start=s.start,
        end=s.end,
        max_runs=s.max_runs,
        params=dict(s.params),
        enabled=s.enabled,
        exceptions=tuple(calendar(e) for e in exceptions or ()),
    )


def trigger(index: int, t: TriggerModel) -> TriggerSpec:
    return TriggerSpec(index=index, after=tuple(dict.fromkeys(t.after)), status=t.status,
                       within=t.within, params=dict(t.params))


def job(
    header: Header,
    defaults: Settings,
    tasks: Mapping[str, TaskModel],
    schedules: list[tuple[ScheduleModel, list[ExceptionModel]]],
    exceptions: list[ExceptionModel],
    triggers: list[TriggerModel],
    definition: dict[str, Any],
    source_path: str,
    base_dir: str,
) -> JobSpec:
    return JobSpec(
        name=header.job,
        tasks=tuple(task(name, t, defaults, tuple(header.agent_labels))
                    for name, t in tasks.items()),
        description=header.description,
        params=dict(header.params),
        connections=dict(header.connections),
        on_failure=header.on_failure,
        max_parallel=header.max_parallel,
        priority=header.priority,
        pools=dict(header.pools),
        timezone=header.timezone,
        schedules=tuple(schedule(i, s, own) for i, (s, own) in enumerate(schedules)),
        exceptions=tuple(calendar(e) for e in exceptions),
        on_misfire=header.on_misfire,
        on_overlap=header.on_overlap,
        triggers=tuple(trigger(i, t) for i, t in enumerate(triggers)),
        agent_labels=tuple(sorted(set(header.agent_labels))),
        enabled=header.enabled,
        tags=tuple(dict.fromkeys(header.tags)),
        deadline=None if header.deadline is None else Deadline(
            finish_by=header.deadline.finish_by, timezone=header.deadline.timezone,
            within=header.deadline.within, of=header.deadline.of),
        definition=definition,
        source_path=source_path,
        base_dir=base_dir,
    )


def business_calendar(c: CalendarFile, definition: dict[str, Any], source_path: str
                      ) -> BusinessCalendar:
    return BusinessCalendar(
        name=c.calendar,
        description=c.description,
        holidays=tuple(dict.fromkeys(HolidaySource(h.country, h.subdiv) for h in c.holidays)),
        dates=tuple(sorted(set(c.dates))),
        weekends=tuple(sorted(set(c.weekends))),
        definition=definition,
        source_path=source_path,
    )
