"""`next`, `scheduler` and `serve`: schedules as the user sees them, and the daemons behind them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import click

from taskplan.cli.common import db_option, get_context, handle_errors, json_option, print_json
from taskplan.errors import UsageError
from taskplan.model import JobSpec
from taskplan.spec import load_job_file
from taskplan.timing import job_timezone, next_firings


def _job_spec(ctx: Any, job_or_file: str) -> JobSpec:
    """A job file is read (not applied); anything else names an applied job."""
    path = Path(job_or_file)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise UsageError(f"{job_or_file}: no such job file")
        return load_job_file(path)
    engine = ctx.engine
    return engine.job_spec(engine.current_version(job_or_file))  # type: ignore[no-any-return]


def parse_after(text: str, job: JobSpec, default_tz: str) -> datetime:
    """An ISO 8601 instant; without an offset it is a wall time in the job's zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--after expects an ISO 8601 date or time such as 2026-03-29T01:00+01:00,"
            f" got {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=job_timezone(job, default_tz))
    return value


@click.command("next")
@click.argument("job_or_file")
@click.option("-n", "count", type=click.IntRange(min=1), default=10, show_default=True,
              help="How many firings to print.")
@click.option("--after", default=None, metavar="ISO",
              help="Start after this instant (default: now); no offset = the job's zone.")
@db_option
@json_option
@handle_errors
def next_cmd(job_or_file: str, count: int, after: str | None, db: str | None,
             as_json: bool) -> None:
    """The next firings of a job (a name, or a job file that is read, not applied)."""
    ctx = get_context(db)
    job = _job_spec(ctx, job_or_file)
    default_tz = ctx.settings.timezone
    start = (parse_after(after, job, default_tz) if after is not None
             else datetime.now().astimezone())
    try:
        found = next_firings(job, start, count, default_tz=default_tz)
    except ValueError as exc:
        raise UsageError(f"{job.name}: {exc}") from None
    out = [{"at": at.isoformat(), "schedule": s.name if s.name is not None else s.index}
           for at, s in found]
    if as_json:
        print_json(out)
        return
    if not job.schedules:
        click.echo(f"{job.name} has no schedules")
        return
    if not out:
        click.echo(f"{job.name}: no firings after {start.isoformat()}")
        return
    for at, s in found:
        offset = at.strftime("%z")
        label = f"UTC{offset[:3]}:{offset[3:]}" if offset else "UTC"
        click.echo(f"{at.isoformat():<32} {at.tzname() or '':<6} {label:<10} schedule {s.key}")
