"""`taskplan forecast`: the predicted makespan, a text Gantt and the critical path of a run
that has not started, from the job's history (docs/forecasts.md)."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta, tzinfo

import click

from taskplan import shapes
from taskplan.cli.common import (
    check_day,
    db_option,
    get_context,
    handle_errors,
    json_option,
    parse_params,
    print_json,
    slot_count,
)
from taskplan.errors import UsageError
from taskplan.forecast import RunForecast
from taskplan.model import JobSpec
from taskplan.rules import declared_params
from taskplan.spec.durations import elapsed_text

GANTT_WIDTH = 50


def next_wall_time(wall: time, zone: tzinfo, now: datetime) -> datetime:
    """The first instant at or after `now` at which the clocks of `zone` read `wall`: the
    second reading of a fall-back's repeated hour when the first has passed; a wall time that
    a spring-forward skips shifted by the gap, as a schedule fires it."""
    day = now.astimezone(zone).date()
    for _ in range(3):
        naive = datetime.combine(day, wall)
        early = naive.replace(tzinfo=zone, fold=0).timestamp()
        late = naive.replace(tzinfo=zone, fold=1).timestamp()
        # PEP 495: fold=0 reads with the offset before a change; in a gap that is the shift.
        for at in ((early, late) if early < late else (early,)):
            if at >= now.timestamp():
                return datetime.fromtimestamp(at, zone)
        day += timedelta(days=1)
    raise AssertionError("a wall time occurs at least once in three days")


def parse_at(text: str, job: JobSpec, default_tz: str, now: datetime) -> datetime:
    """`--at`: an ISO 8601 instant (no offset: a wall time in the job's zone), or HH:MM, the
    next such wall time in the job's zone (today, else tomorrow)."""
    from taskplan.timing import job_timezone

    zone = job_timezone(job, default_tz)
    clock = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if clock:
        hour, minute = int(clock.group(1)), int(clock.group(2))
        if hour > 23 or minute > 59:
            raise UsageError(f"--at expects a time of day 00:00 to 23:59, got {text!r}")
        return next_wall_time(time(hour, minute), zone, now)
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            "--at expects HH:MM or an ISO 8601 date-time such as 2026-03-29T01:00+01:00,"
            f" got {text!r}") from None
    check_day(value.date(), "--at", text)
    return value if value.tzinfo is not None else value.replace(tzinfo=zone)


def _span(seconds: float) -> str:
    return elapsed_text(seconds, millis=False)  # a forecast is never as fine as milliseconds


def gantt(forecast: RunForecast, start: float) -> list[str]:
    """One line per task, earliest first: name, start offset, duration and a bar; the tasks
    of the critical path are drawn with '#', the others with '='."""
    total = max(forecast.finish_at - start, 1e-9)
    critical = set(forecast.critical_path)
    rows = sorted(forecast.tasks.items(), key=lambda kv: (kv[1][0], kv[1][1], kv[0]))
    name_w = max([len(n) for n, _ in rows] + [4])
    lines = [f"{'TASK':<{name_w}}  {'START':>8}  {'TOOK':>8}  |{'':<{GANTT_WIDTH}}|"]
    for name, (s, e) in rows:
        # Every task gets at least one column, inside the box even when it ends the run.
        lo = min(round((s - start) / total * GANTT_WIDTH), GANTT_WIDTH - 1)
        hi = max(lo + 1, round((e - start) / total * GANTT_WIDTH))
        bar = " " * lo + ("#" if name in critical else "=") * (hi - lo)
        lines.append(f"{name:<{name_w}}  {'+' + _span(s - start):>8}  {_span(e - s):>8}  "
                     f"|{bar:<{GANTT_WIDTH}}|")
    return lines


def deadline_verdict(spec: JobSpec, forecast: RunForecast, start: float, zone: str) -> str:
    """Whether a run fired at `start` would meet the job's deadline."""
    from taskplan.forecast.deadlines import deadline_at

    assert spec.deadline is not None
    at = deadline_at(spec.deadline, spec.timezone or zone, start, start)
    assert at is not None
    late = forecast.finish_at - at
    verdict = (f"would be missed by {_span(late)}" if late > 0
               else f"would be met with {_span(max(0.0, -late))} to spare")  # no -0.0s
    return f"deadline {shapes.iso(at)}: {verdict}"


@click.command("forecast")
@click.argument("job_or_file")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A parameter of the run (repeatable); history of runs with the same values"
                   " is preferred.")
@click.option("--workers", type=slot_count(), default=None,
              help="Slots to run it on [default: the slots of the agents alive now, else the"
                   " default of `taskplan run`].")
@click.option("--at", "at", default=None, metavar="TIME",
              help="When the run would start: HH:MM or ISO 8601 (default: now).")
@db_option
@json_option
@handle_errors
def forecast_cmd(job_or_file: str, params: tuple[str, ...], workers: int | None,
                 at: str | None, db: str | None, as_json: bool) -> None:
    """Predict a run not started yet: its makespan, a text Gantt and its critical path."""
    from taskplan.cli.execute import DEFAULT_WORKERS
    from taskplan.cli.schedule_cmds import job_spec_of
    from taskplan.engine.forecasts import alive_slots, forecast_job

    overrides = parse_params(params)
    ctx = get_context(db)
    spec = job_spec_of(ctx, job_or_file)
    overrides = declared_params(spec, overrides)
    engine = ctx.engine_or_scratch()  # a job file can be forecast before any store exists
    now = engine.clock()
    start = (parse_at(at, spec, ctx.settings.timezone, datetime.fromtimestamp(now).astimezone())
             .timestamp() if at is not None else now)
    slots = workers or alive_slots(engine.store, now) or DEFAULT_WORKERS
    forecast = forecast_job(engine.store, spec, start, slots, overrides)
    assert forecast is not None  # slots >= 1: a run alone always finishes
    if as_json:
        print_json(shapes.planned_forecast(forecast, start))
        return
    makespan = forecast.finish_at - start
    click.echo(f"{spec.name}: makespan ~{_span(makespan)} on {slots} slot(s), "
               f"{shapes.iso(start)} -> {shapes.iso(forecast.finish_at)}")
    click.echo("critical path: " + (" -> ".join(forecast.critical_path) or "-"))
    if spec.deadline is not None:
        click.echo(deadline_verdict(spec, forecast, start, engine.default_tz))
    click.echo(f"basis: {forecast.basis}")
    for line in gantt(forecast, start):
        click.echo(line)
