"""`stop`, `cancel` and `purge`: acting on runs from any process."""

from __future__ import annotations

import time

import click

from taskplan.cli.common import db_option, get_context, handle_errors, parse_run_id
from taskplan.errors import UsageError
from taskplan.spec.durations import parse_duration
from taskplan.store import reports


@click.command("stop")
@click.argument("run")
@db_option
@handle_errors
def stop_cmd(run: str, db: str | None) -> None:
    """Drain a run: running tasks finish, nothing new starts; it ends cancelled."""
    state = get_context(db).engine.stop_run(parse_run_id(run))
    click.echo(f"run {run}: {state}")


@click.command("cancel")
@click.argument("run")
@db_option
@handle_errors
def cancel_cmd(run: str, db: str | None) -> None:
    """Kill a run's running tasks now; it ends cancelled."""
    state = get_context(db).engine.cancel_run(parse_run_id(run))
    click.echo(f"run {run}: {state}")


@click.command("purge")
@click.option("--older-than", "older_than", required=True, metavar="DURATION",
              help="Delete finished runs that ended longer ago than this (e.g. 90d).")
@click.option("--dry-run", is_flag=True, help="List the runs that would go; delete nothing.")
@db_option
@handle_errors
def purge_cmd(older_than: str, dry_run: bool, db: str | None) -> None:
    """Delete finished runs, their task runs, logs and events past retention."""
    try:
        seconds = parse_duration(older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    engine = get_context(db).engine
    if dry_run:
        with engine.store.read() as tx:
            ids = reports.purgeable(tx, time.time() - seconds)
        shown = ", ".join(str(i) for i in ids[:50]) + (", ..." if len(ids) > 50 else "")
        click.echo(f"would purge {len(ids)} run(s)" + (f": {shown}" if ids else ""))
        return
    count = reports.purge(engine.store, time.time() - seconds)
    click.echo(f"purged {count} run(s)")
