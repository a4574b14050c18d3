"""`backfill` and `firings`: a job's schedule firings, made up for and looked back on."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any

import click

from taskplan.cli.common import (
    check_day,
    db_option,
    get_context,
    handle_errors,
    json_option,
    parse_params,
    print_json,
    whole,
)
from taskplan.errors import UsageError

_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_bound(text: str, option: str, tz: Any, *, end: bool) -> datetime:
    """ISO 8601 date or date-time; without an offset it is a wall time in the job's zone (in
    a fall-back's repeated hour, its first occurrence). A bare date means the start of that day
    for --from and its end for --to. Returned as that instant in the job's zone: its fold tells
    the two copies of a repeated hour apart, though comparisons must still use instants."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} expects an ISO 8601 date or time such as 2026-01-31 or"
                         f" 2026-01-31T02:00+01:00, got {text!r}") from None
    check_day(value.date(), option, text)
    if _DATE_ONLY.match(text.strip()) and end:
        value = datetime.combine(value.date() + timedelta(days=1), time()) \
            - timedelta(microseconds=1)
    if value.tzinfo is None:
        value = value.replace(tzinfo=tz)
    return value.astimezone(UTC).astimezone(tz)


@click.command("backfill")
@click.argument("job")
@click.option("--from", "start", required=True, metavar="DATE",
              help="First instant (a bare date: that day's start), in the job's zone unless"
                   " it carries an offset.")
@click.option("--to", "end", required=True, metavar="DATE",
              help="Last instant (a bare date: that day's end); capped at now.")
@click.option("--max-active", "max_active", type=whole(1), default=None,
              help="At most this many of the backfill's runs running at once (the rest wait"
                   " queued).")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a parameter in every run (repeatable).")
@click.option("--dry-run", "dry_run", is_flag=True,
              help="List the firings and what would be made; make nothing.")
@db_option
@json_option
@handle_errors
def backfill_cmd(job: str, start: str, end: str, max_active: int | None,
                 params: tuple[str, ...], dry_run: bool, db: str | None, as_json: bool) -> None:
    """One run per firing the job's schedules would have made between two dates."""
    from taskplan import shapes
    from taskplan.backfill import backfill, locate
    from taskplan.timing import job_timezone

    ctx = get_context(db)
    engine = ctx.engine
    tz = job_timezone(locate(engine, job)[2], ctx.settings.timezone)
    out = backfill(engine, job, parse_bound(start, "--from", tz, end=False),
                   parse_bound(end, "--to", tz, end=True), max_active=max_active,
                   params=parse_params(params), dry_run=dry_run,
                   default_tz=ctx.settings.timezone)
    if as_json:
        print_json(shapes.backfill(out, dry_run))
        return
    new = [f for f in out.firings if f.new]
    for f in out.firings:
        if f.new:
            what = "would run" if dry_run else f"run {f.run_id}"
            if f.note:
                what += f" (earlier: {f.note})"
        else:
            what = f"already run {f.run_id}" if f.run_id else "taken meanwhile"
        click.echo(f"{f.at.isoformat():<26} schedule {f.schedule:<10} {what}")
    span = f"{out.start.isoformat()} .. {out.end.isoformat()}"
    if not out.firings:
        click.echo(f"{job}: no firings between {span}")
    elif dry_run:
        click.echo(f"{job}: {len(out.firings)} firing(s) in {span}; {len(new)} would be run")
    elif not new:
        click.echo(f"{job}: {len(out.firings)} firing(s) in {span}; every one already has a"
                   " run, nothing created")
    else:
        pace = f", at most {max_active} running at once" if max_active else ""
        click.echo(f"{job}: backfill {out.backfill_id} created {len(new)} run(s){pace}"
                   f" ({len(out.firings) - len(new)} firing(s) already had one)")


def suppressed_firings(spec: Any, lo: datetime, hi: datetime, default_tz: str,
                       calendars: Any, limit: int) -> list[tuple[datetime, str, str]]:
    """(instant, schedule key, why) of the newest `limit` firings in (lo, hi] that the job's
    exceptions or business calendars dropped or moved: each schedule replayed without them,
    compared with what it really fires (schedules on the Nth business day have no such
    replay). Looked for backwards from `hi`, window by window, so the newest are found first
    whatever the range (a weekend exception's Sunday, not the Saturday before it)."""
    import dataclasses

    from taskplan.model import Shift
    from taskplan.timing import compile_job, compile_schedule, job_timezone

    tz = job_timezone(spec, default_tz)
    # Replayed firings per schedule, at most: a year of a minutely schedule is not walked for
    # every `firings` (the newest days are what it is asked about).
    budget = 20 * min(limit, 100_000) + 2_000
    out: list[tuple[datetime, str, str]] = []
    for real in compile_job(spec, default_tz, calendars):
        s = real.spec
        if s.business_day is not None or not (real.exceptions or s.business_calendar):
            continue  # nothing drops its firings
        raw = compile_schedule(dataclasses.replace(s, business_calendar=None, shift=Shift.SKIP,
                                                   max_runs=None), tz, ())

        mine: list[tuple[datetime, str, str]] = []  # newest first
        w_hi, span, spent = hi.astimezone(UTC), timedelta(hours=1), 0
        lo_utc = lo.astimezone(UTC)
        while w_hi > lo_utc and len(mine) < limit and spent < budget:
            w_lo = max(lo_utc, w_hi - span)
            got, steps, complete = _dropped_in(spec, raw, real, w_lo, w_hi,
                                               min(10 * limit, budget - spent),
                                               default_tz, calendars)
            spent += steps
            if not complete:
                if span <= timedelta(seconds=2):
                    break  # firings this dense: what was found is all there is to say
                span /= 2
                continue
            mine.extend(reversed(got))
            w_hi, span = w_lo, span * 2
        out.extend(mine[:limit])
    return out


def _dropped_in(spec: Any, raw: Any, real: Any, w_lo: datetime, w_hi: datetime, cap: int,
                default_tz: str, calendars: Any
                ) -> tuple[list[tuple[datetime, str, str]], int, bool]:
    """The firings of `raw` in (w_lo, w_hi] that `real` (the same schedule with its exceptions
    and calendar) does not make, with why; the replayed firings it took; and whether the
    window was walked to its end within `cap` of them."""
    from taskplan.timing import calendar_skips

    key = real.spec.key
    got: list[datetime] = []
    # Compared as instants: datetimes sharing a zone compare by wall clock with fold ignored,
    # which would mistake the two copies of a fall-back hour for each other.
    at = raw.next_after(w_lo)
    fired = real.next_after(w_lo)
    steps = 0
    while at is not None and at.timestamp() <= w_hi.timestamp():
        if steps >= cap:
            return [], steps, False
        steps += 1
        while fired is not None and fired.timestamp() < at.timestamp():
            fired = real.next_after(fired)
        if fired is None or fired.timestamp() != at.timestamp():
            got.append(at)
        at = raw.next_after(at)
    reasons = {} if not got else {
        a.timestamp(): why for a, sp, why in calendar_skips(
            spec, w_lo, w_hi, default_tz=default_tz, calendars=calendars,
            limit=len(got) + 100) if sp.key == key}
    return [(a, key, "skipped: " + (reasons.get(a.timestamp())
                                    or _excepted(real.exceptions, a))) for a in got], steps, True


def _excepted(exceptions: Any, at: datetime) -> str:
    """Why an exception removed the firing at `at`: its day when a whole-day exception
    (`dates:`, or day fields only) matches, else its wall time (`hours: [12]` removes the
    noon firing, not the day)."""
    from taskplan.timing.calendar import ExceptionRule

    wall = at.replace(tzinfo=None)
    rules = [ExceptionRule(c) for c in exceptions if c.closed_on is None]
    if any(r.whole_day and r.matches(wall) for r in rules) or not any(
            r.matches(wall) for r in rules):
        return f"{at.date().isoformat()} is excepted (exceptions:)"
    return f"{wall.strftime('%Y-%m-%d %H:%M')} is excepted (exceptions:)"


@click.command("firings")
@click.argument("job")
@click.option("--limit", type=whole(1), default=20, show_default=True,
              help="How many of the latest firings to print.")
@db_option
@json_option
@handle_errors
def firings_cmd(job: str, limit: int, db: str | None, as_json: bool) -> None:
    """A job's latest schedule firings: the run each made, or why it made none."""
    import time as _time

    from taskplan import shapes
    from taskplan.backfill import locate
    from taskplan.store import job_admin, sched_ops
    from taskplan.timing import calendar_names, job_timezone

    ctx = get_context(db)
    engine = ctx.engine
    found, version_id, spec = locate(engine, job)
    default_tz = ctx.settings.timezone
    tz = job_timezone(spec, default_tz)
    with engine.store.read() as tx:
        rows = sched_ops.recent_firings(tx, found.job_id, limit)
        applied = job_admin.version_applied_at(tx, version_id)
    now = _time.time()
    # Dropped firings are looked for back to the oldest recorded one printed, or, when every
    # recorded one fits, back to the apply of this version (a year at most).
    lo = rows[-1].fire_at if len(rows) >= limit else max(
        min([applied, *(r.fire_at for r in rows[-1:])]), now - 366 * 86400)
    calendars = engine.closed_days().closed if calendar_names(spec) else None
    try:
        gaps = suppressed_firings(spec, datetime.fromtimestamp(lo, tz),
                                  datetime.fromtimestamp(now, tz), default_tz, calendars, limit)
    except ValueError:
        gaps = []  # a calendar it names is gone: only what was recorded
    entries = [shapes.firing(datetime.fromtimestamp(r.fire_at, tz), r.schedule, r.run_id,
                             r.run_state, r.note) for r in rows]
    entries += [shapes.firing(at, key, None, None, why, recorded=False)
                for at, key, why in gaps]
    entries.sort(key=lambda e: (datetime.fromisoformat(e["at"]).timestamp(), e["schedule"]),
                 reverse=True)
    entries = entries[:limit]
    if as_json:
        print_json(entries)
        return
    if not entries:
        click.echo(f"{job}: no schedule firings yet")
        return
    click.echo(f"{'AT':<26} {'SCHEDULE':<10} OUTCOME")
    for e in entries:
        if e["outcome"] == "run":
            what = f"run {e['run_id']} {e['run_state'] or '(purged)'}"
            if e["by"] == "backfill":
                what += " (backfill)"
        else:
            what = str(e["reason"])
        click.echo(f"{e['at']:<26} {e['schedule']!s:<10} {what}")
