"""`pause` and `resume`: whether a job's schedules and triggers make runs."""

from __future__ import annotations

import click

from taskplan.cli.common import db_option, get_context, handle_errors


@click.command("pause")
@click.argument("job")
@db_option
@handle_errors
def pause_cmd(job: str, db: str | None) -> None:
    """Stop a job's schedules and triggers from making runs (manual runs still start)."""
    changed = get_context(db).engine.pause_job(job)
    click.echo(f"{job}: paused" if changed else f"{job}: already paused")


@click.command("resume")
@click.argument("job")
@db_option
@handle_errors
def resume_cmd(job: str, db: str | None) -> None:
    """Let a paused job's schedules and triggers make runs again, from now on."""
    changed = get_context(db).engine.resume_job(job)
    click.echo(f"{job}: resumed" if changed else f"{job}: not paused")
