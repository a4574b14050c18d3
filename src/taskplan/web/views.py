"""What the API and the pages show, assembled from engine and store reads (no SQL here)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from taskplan import shapes
from taskplan.dataclass import dataclass
from taskplan.engine import Engine
from taskplan.engine.triggers import trigger_waits
from taskplan.errors import NotFoundError, UsageError
from taskplan.model import TERMINAL_TASK_STATES, JobSpec, ScheduleSpec, Shift, TaskRunKind
from taskplan.redact import mask_url
from taskplan.spec.checks import MAX_NAME
from taskplan.store import console, job_admin, ops, reports, sched_ops
from taskplan.store.reports import RunInfo, TaskRunInfo
from taskplan.timing import next_firings, without_schedules
from taskplan.timing.jobs import calendar_names, calendar_skips, next_with_skips

if TYPE_CHECKING:
    from taskplan.forecast.plan import RunForecast

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass
class Ctx:
    """What every view needs: the engine and the zone schedules default to."""

    engine: Engine
    timezone: str = "UTC"
    # version id -> ((calendars stamp, paused schedules), next firing computed, its schedule):
    # the next firing after `now` stays the one computed earlier until `now` reaches it.
    next_cache: dict[int, tuple[Any, datetime, ScheduleSpec]] = field(default_factory=dict)
    # run id -> (its newest event id, its graph): a run's graph is rebuilt only after it moved.
    graph_cache: OrderedDict[int, tuple[int, console.RunGraph]] = field(
        default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _duration_words(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def schedule_words(s: ScheduleSpec) -> str:
    """A schedule in words, as the jobs page shows it."""
    if s.cron is not None:
        text = f"cron {s.cron}"
    elif s.every is not None:
        text = f"every {_duration_words(s.every)}"
    elif s.once is not None:
        text = f"once at {s.once.isoformat(sep=' ', timespec='minutes')}"
    elif s.calendar is not None:
        c = s.calendar
        parts = []
        if c.at:
            parts.append("at " + ", ".join(t.strftime("%H:%M") for t in c.at))
        if c.hours:
            parts.append("hours " + ",".join(map(str, c.hours)))
        if c.minutes:
            parts.append("minutes " + ",".join(map(str, c.minutes)))
        if c.weekdays:
            parts.append("on " + ",".join(WEEKDAYS[d] for d in c.weekdays))
        if c.monthdays:
            parts.append("days " + ",".join("last" if d == -1 else str(d) for d in c.monthdays))
        if c.months:
            parts.append("months " + ",".join(map(str, c.months)))
        text = "calendar " + (" ".join(parts) or "every day")
        if s.business_day is not None:
            # The calendar form holds only the times here: the days are business days.
            n = s.business_day
            which = (f"business day {n}" if n > 0 else "last business day" if n == -1
                     else f"business day {-n} from the end")
            times = [p for p in parts if not p.startswith(("on ", "days "))]
            text = f"{which} of each month" + "".join(" " + p for p in times)
            text += f" (calendar {s.business_calendar})"
    else:
        text = "?"
    if s.business_calendar is not None and s.business_day is None:
        text += f", on {s.business_calendar}'s business days"
        if s.shift != Shift.SKIP:
            text += f" (a closed day's firing moves to the {s.shift.value} business day)"
    if s.name:
        text = f"{s.name}: {text}"
    if s.max_runs is not None:
        text += f" (at most {s.max_runs} runs)"
    if not s.enabled:
        text += " (disabled)"
    return text


def job_spec(ctx: Ctx, name: str) -> JobSpec:
    return ctx.engine.job_spec(ctx.engine.current_version(name))


def without_paused(ctx: Ctx, spec: JobSpec, paused: Collection[str] | None = None) -> JobSpec:
    """The job as its schedules fire: those paused one at a time make no runs, so their
    firings are nobody's next (as `next` and `jobs` leave them out). `paused` when the caller
    read them already (a listing reads every job's at once)."""
    if not spec.schedules:
        return spec
    keys = ctx.engine.paused_schedules(spec.name) if paused is None else paused
    return without_schedules(spec, keys)


def job_paused(ctx: Ctx, name: str) -> bool:
    """Whether the job is paused (`taskplan pause JOB`): none of its schedules makes a run,
    so it has no next firings (`taskplan next JOB --json` is [])."""
    with ctx.engine.store.read() as tx:
        found = job_admin.live_job(tx, name)
        return found is not None and sched_ops.job_paused(tx, found.job_id)


def calendars_of(ctx: Ctx, spec: JobSpec) -> dict[str, Any] | None:
    """The closed days of the business calendars the job names (None if it names none)."""
    return ctx.engine.closed_days().closed if calendar_names(spec) else None


def next_of(ctx: Ctx, spec: JobSpec, n: int, after: datetime | None = None
            ) -> list[tuple[datetime, ScheduleSpec]]:
    if not spec.schedules:
        return []
    start = after or datetime.now().astimezone()
    try:
        return next_firings(spec, start, n, default_tz=ctx.timezone,
                            calendars=calendars_of(ctx, spec))
    except ValueError as exc:
        raise UsageError(f"{spec.name}: {exc}") from None


def skips_of(ctx: Ctx, spec: JobSpec, start: datetime, until: datetime
             ) -> list[tuple[datetime, ScheduleSpec, str]]:
    """Firings a business calendar dropped or moved in (start, until], with why."""
    calendars = calendars_of(ctx, spec)
    if calendars is None:
        return []
    try:
        return calendar_skips(spec, start, until, default_tz=ctx.timezone, calendars=calendars)
    except ValueError as exc:
        raise UsageError(f"{spec.name}: {exc}") from None


def next_list(ctx: Ctx, spec: JobSpec, n: int, after: datetime | None = None
              ) -> list[dict[str, Any]]:
    """`taskplan next --json`: firings and the calendar skips among them, in time order."""
    if not spec.schedules:
        return []
    start = after or datetime.now().astimezone()
    try:
        entries = next_with_skips(spec, start, n, default_tz=ctx.timezone,
                                  calendars=calendars_of(ctx, spec))
    except ValueError as exc:
        raise UsageError(f"{spec.name}: {exc}") from None
    return shapes.next_timeline(entries)


def _trigger_waits(ctx: Ctx, version_id: int, spec: JobSpec) -> list[dict[str, Any]]:
    """As `jobs --json` (the scheduler's own rule), plus each upstream's last outcome."""
    with ctx.engine.store.read() as tx:
        waits = trigger_waits(tx, version_id, spec.triggers, time.time())
        out = []
        for wait in waits:
            ups = console.upstream_outcomes(tx, list(wait["after"]))  # type: ignore[call-overload]
            out.append({**wait, "upstreams": [
                {"job": u.job, "last_state": u.state, "last_run_id": u.run_id,
                 "finished_at": shapes.iso(u.finished_at)} for u in ups]})
    return out


def next_firing_of(ctx: Ctx, version_id: int, spec: JobSpec, paused: Collection[str]
                   ) -> tuple[datetime, ScheduleSpec] | None:
    """The job's next firing from now (its `paused` schedules left out), remembered until it
    passes (the jobs page asks for a thousand of them at each refresh)."""
    spec = without_schedules(spec, paused)
    if not spec.schedules:
        return None
    now = datetime.now().astimezone()
    stamp = (ctx.engine.closed_days().stamp if calendar_names(spec) else None,
             frozenset(paused))
    cached = ctx.next_cache.get(version_id)
    if cached is not None and cached[0] == stamp and now < cached[1]:
        return cached[1], cached[2]
    found = next_of(ctx, spec, 1, now)
    if not found:
        return None
    if len(ctx.next_cache) > 10_000:
        ctx.next_cache.clear()
    ctx.next_cache[version_id] = (stamp, found[0][0], found[0][1])
    return found[0]


def job_object(ctx: Ctx, ov: console.JobOverview, paused: Collection[str], *,
               detail: bool = False) -> dict[str, Any]:
    """`paused`: the keys of the job's schedules paused one at a time."""
    spec = ctx.engine.job_spec(ov.version_id)
    # As `jobs --json`: a paused (or disabled) job has no next firing, nor a paused schedule.
    nxt = (None if ov.paused or not spec.enabled
           else next_firing_of(ctx, ov.version_id, spec, paused))
    obj: dict[str, Any] = {
        "name": ov.name, "version": ov.version, "versions": ov.versions, "paused": ov.paused,
        "enabled": spec.enabled, "tags": list(spec.tags), "description": spec.description,
        # The key pause/resume take, as `firings --json` names a schedule: its name, else its
        # index as a string (`next` keeps `next --json`'s number).
        "schedules": [{"schedule": s.key,
                       "text": schedule_words(s), "enabled": s.enabled,
                       "paused": s.key in paused}
                      for s in spec.schedules],
        "next": shapes.next_firing(*nxt) if nxt else None,
        "triggers": _trigger_waits(ctx, ov.version_id, spec),
        "recent_runs": [{"run_id": r.run_id, "state": r.state} for r in ov.recent],
    }
    if detail:
        obj["params"] = spec.params
        obj["tasks"] = [{"name": t.name, "kind": t.kind, "depends_on": list(t.depends_on),
                         "stage": t.stage, "foreach": t.foreach is not None}
                        for t in spec.tasks]
        obj["connections"] = {k: mask_url(v) for k, v in spec.connections.items()}
        obj["timezone"] = spec.timezone or ctx.timezone
    return obj


def jobs_list(ctx: Ctx, *, after: str | None = None, contains: str | None = None,
              limit: int | None = None) -> list[dict[str, Any]]:
    if contains is not None and len(contains) > MAX_NAME:
        return []  # no name holds it (and SQLite refuses a LIKE pattern past 50,000 bytes)
    with ctx.engine.store.read() as tx:
        overviews = console.job_overviews(tx, after=after, contains=contains, limit=limit)
        paused = sched_ops.paused_schedules_by_job(tx)
    return [job_object(ctx, ov, paused.get(ov.job_id, set())) for ov in overviews]


def job_detail(ctx: Ctx, name: str) -> dict[str, Any]:
    with ctx.engine.store.read() as tx:
        found = console.job_overviews(tx, name=name)
        deleted = not found and (row := ops.job_by_name(tx, name)) is not None and (
            row.current_version_id is None)
    if deleted:
        # A run page links here: "no job named" would deny a job whose runs are on screen.
        raise NotFoundError(f"job {name!r} was deleted (its runs are kept: /runs?job={name});"
                            " apply it again to bring it back")
    if not found:
        ctx.engine.current_version(name)  # raises the engine's own "no job named" error
        raise NotFoundError(f"no job named {name!r}")
    return job_object(ctx, found[0], ctx.engine.paused_schedules(name), detail=True)


GRAPH_CACHE = 16


def run_graph(ctx: Ctx, run_id: int) -> tuple[int, console.RunGraph]:
    """A run's newest event id and its graph (foreach items counted per state: a scan of a
    big run's task runs), the graph read again only when the run has a new event."""
    with ctx.engine.store.read() as tx:
        mark = console.latest_event_id(tx, run_id)
        with ctx.lock:
            cached = ctx.graph_cache.get(run_id)
        if cached is not None and cached[0] == mark:
            return cached
        graph = console.run_graph(tx, run_id)
    with ctx.lock:
        ctx.graph_cache[run_id] = (mark, graph)
        ctx.graph_cache.move_to_end(run_id)
        while len(ctx.graph_cache) > GRAPH_CACHE:
            ctx.graph_cache.popitem(last=False)
    return mark, graph


def live_mark(ctx: Ctx, run_id: int | None = None) -> int:
    """The newest event id (of a run) before a live page reads what it shows: the page's
    stream starts from it, so a change between the page's reads and the stream's start is
    still announced."""
    with ctx.engine.store.read() as tx:
        return console.latest_event_id(tx, run_id)


def run_or_404(ctx: Ctx, run_id: int) -> RunInfo:
    with ctx.engine.store.read() as tx:
        info = reports.run_info(tx, run_id)
    if info is None:
        raise NotFoundError(f"no run {run_id}")
    return info


# What a task name, an item and an attempt number lead to, refused in the words of
# `taskplan logs` (with `item=`, the API's parameter, for its `--item`).
def task_run_of(ctx: Ctx, run_id: int, task: str, item: int | None) -> TaskRunInfo:
    """The task run of `task` in the run: its item `item`, or the task itself without one."""
    with ctx.engine.store.read() as tx:
        found = console.task_run_by_name(tx, run_id, task, item)
        if found is not None:
            return found
        # Why not, read only now: the lookup above is all a log tail's poll costs.
        parent = console.task_run_by_name(tx, run_id, task, None) if item is not None else None
        has_items = parent is not None and any(
            t.item_index is not None
            for t in console.task_runs_page(tx, run_id, task=task, limit=2))
    if parent is None:
        run_or_404(ctx, run_id)
        raise NotFoundError(f"run {run_id} has no task {task!r}")
    if parent.kind != TaskRunKind.FOREACH:
        raise UsageError(f"{task} is not a foreach task: item= picks an item of a foreach")
    if not has_items:
        if parent.state in TERMINAL_TASK_STATES:
            raise NotFoundError(f"{task} has no item {item}: its foreach has no items")
        raise NotFoundError(f"{task} has no item {item} yet: its foreach has not made"
                            " its items")
    raise NotFoundError(f"{task} has no item {item}")


def refuse_foreach(ctx: Ctx, run_id: int, tr: TaskRunInfo) -> None:
    """A foreach task's output is its items': refused once it has items (before, its own
    attempts are what there is to say, as for any task)."""
    _, graph = run_graph(ctx, run_id)
    count = sum(next((n.items for n in graph.nodes if n.id == tr.id), {}).values())
    if count:
        raise UsageError(f"{tr.name} is a foreach task with {count} item(s): pick one with"
                         " item=N")


def attempt_of(task: str, tr: TaskRunInfo, attempt: int | None) -> int:
    """The attempt asked for (default: the latest) if the task run has it."""
    number = attempt or tr.attempts
    if number == 0 or number > max(tr.attempts, 0):
        # "yet" only while one may still come.
        if tr.state in TERMINAL_TASK_STATES and tr.attempts <= 0:
            raise NotFoundError(f"{task} never ran ({tr.state}): no attempts")
        if tr.state in TERMINAL_TASK_STATES:
            raise NotFoundError(f"{task} has no attempt {number}: it ended ({tr.state}) after"
                                f" {tr.attempts}")
        raise NotFoundError(f"{task} has no attempt {attempt or 1} yet")
    return number


def run_status(ctx: Ctx, run_id: int, with_attempts: bool = False) -> dict[str, Any]:
    """The object of `status RUN --json` (`--attempts` with `with_attempts`): the same reads,
    forecast and waiting reasons as the CLI."""
    with ctx.engine.store.read() as tx:
        info = reports.run_info(tx, run_id)
        if info is None:
            raise NotFoundError(f"no run {run_id}")
        tasks = reports.task_runs(tx, run_id)
        tries = reports.attempts_of_run(tx, run_id) if with_attempts else None
    predicted = forecast(ctx, run_id) if info.state in ("running", "stopping") else None
    return shapes.run_status(info, tasks, predicted, tries, waiting_reasons(ctx, info))


def waiting_reasons(ctx: Ctx, run: RunInfo) -> dict[int, str]:
    """task run id -> why it is not running yet, in the engine's words."""
    if run.state not in ("queued", "running", "stopping"):
        return {}
    from taskplan.engine.waiting import explain

    return explain(ctx.engine.store, run.run_id)


def forecast(ctx: Ctx, run_id: int) -> RunForecast | None:
    """The predicted finish of a running run (None when no agent is alive to run it)."""
    from taskplan.engine.forecasts import forecast_for_run

    try:
        return forecast_for_run(ctx.engine.store, run_id, time.time(),
                                spec_of=ctx.engine.job_spec)
    except Exception:  # a forecast is a nicety: never the reason a page fails
        return None
