"""`calendars`: the business calendars applied to the store, and the days they close."""

from __future__ import annotations

from datetime import date, timedelta

import click

from taskplan.cli.common import (
    check_day,
    db_option,
    get_context,
    handle_errors,
    json_option,
    print_json,
)
from taskplan.errors import NotFoundError, UsageError


def _day(text: str, what: str) -> date:
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what} expects a date as YYYY-MM-DD, got {text!r}") from None
    check_day(day, what, text)
    return day


@click.command("calendars")
@click.argument("name", required=False)
@click.option("--from", "start", default=None, metavar="DATE",
              help="With NAME: first day to list (default: today).")
@click.option("--to", "end", default=None, metavar="DATE",
              help="With NAME: last day to list (default: 90 days after --from).")
@db_option
@json_option
@handle_errors
def calendars_cmd(name: str | None, start: str | None, end: str | None, db: str | None,
                  as_json: bool) -> None:
    """List business calendars; with NAME, its closed days and why each is closed."""
    from taskplan.timing.business import ClosedDays, describe

    engine = get_context(db).engine
    calendars = engine.business_calendars()
    if name is None:
        if start or end:
            raise UsageError("--from and --to need a calendar NAME")
        rows = [describe(c) for c in calendars.values()]
        if as_json:
            print_json(rows)
            return
        if not rows:
            click.echo("no calendars (taskplan apply FILE to add one)")
            return
        click.echo(f"{'CALENDAR':<24} {'HOLIDAYS':<20} {'DATES':>5}  WEEKENDS")
        for r in rows:
            click.echo(f"{r['name']:<24} {','.join(r['holidays']) or '-':<20} {r['dates']:>5}  "
                       f"{','.join(r['weekends']) or '-'}")
        return
    if name not in calendars:
        known = ", ".join(sorted(calendars)) or "none applied"
        raise NotFoundError(f"no calendar named {name!r} (known: {known})")
    first = _day(start, "--from") if start else date.today()
    last = _day(end, "--to") if end else first + timedelta(days=90)
    if last < first:
        raise UsageError(f"--to {last.isoformat()} is before --from"
                         + (f" {first.isoformat()}" if start else " (default: today)"))
    if (last - first).days > 3660:
        raise UsageError("--from/--to span more than ten years")
    closed = ClosedDays(calendars[name])
    days = [(first + timedelta(days=i)) for i in range((last - first).days + 1)]
    out = [{"date": d.isoformat(), "reason": why} for d in days
           if (why := closed.reason(d)) is not None]
    if as_json:
        print_json(out)
        return
    for row in out:
        click.echo(f"{row['date']}  {row['reason']}")
