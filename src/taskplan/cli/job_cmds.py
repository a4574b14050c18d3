"""`pause`, `resume` and `delete`: what happens to a job as a whole (and `apply --prune`);
`connections`: the shared connections jobs may use."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from taskplan.cli.common import db_option, get_context, handle_errors, json_option, print_json
from taskplan.cli.terminal_text import safe_line
from taskplan.errors import ConflictError

if TYPE_CHECKING:
    from taskplan.engine import Engine
    from taskplan.engine.commands import JobDeletion


SCHEDULE_OPTION = click.option(
    "--schedule", "schedule", default=None, metavar="KEY",
    help="Only this schedule (its name, else its index in the file).")


@click.command("pause")
@click.argument("job")
@SCHEDULE_OPTION
@db_option
@handle_errors
def pause_cmd(job: str, schedule: str | None, db: str | None) -> None:
    """Stop a job's schedules and triggers from making runs (manual runs still start)."""
    _switch(db, job, schedule, pause=True)


@click.command("resume")
@click.argument("job")
@SCHEDULE_OPTION
@db_option
@handle_errors
def resume_cmd(job: str, schedule: str | None, db: str | None) -> None:
    """Let a paused job's schedules and triggers make runs again, from now on."""
    _switch(db, job, schedule, pause=False)


def _switch(db: str | None, job: str, schedule: str | None, *, pause: bool) -> None:
    """Pause or resume a job, or one of its schedules, and say whether that changed anything."""
    engine = get_context(db).engine
    if schedule is None:
        what, changed = f"{job}:", engine.pause_job(job) if pause else engine.resume_job(job)
    else:
        what = f"{job}: schedule {schedule}"
        changed = (engine.pause_schedule(job, schedule) if pause
                   else engine.resume_schedule(job, schedule))
    done, same = ("paused", "already paused") if pause else ("resumed", "not paused")
    click.echo(f"{what} {done if changed else same}")


def _deleted(d: JobDeletion, dry_run: bool) -> str:
    verb = "would be deleted" if dry_run else "deleted"
    cancel = ""
    if d.cancelled:
        ids = ", ".join(str(r) for r in d.cancelled)
        cancel = f"; {'would cancel' if dry_run else 'cancelled'} active run(s) {ids}"
    if d.purged:
        return f"{d.name}: {verb} with its {d.runs} run(s){cancel}"
    kept = f"history kept: {d.runs} run(s), see taskplan runs --job {d.name}" if d.runs \
        else "no runs"
    return f"{d.name}: {verb} ({kept}){cancel}"


@click.command("delete")
@click.argument("job")
@click.option("--force", is_flag=True, help="Cancel the job's active runs instead of refusing.")
@click.option("--purge-history", "purge_history", is_flag=True,
              help="Also delete its runs, logs and firings (default: keep them readable).")
@click.option("--dry-run", "dry_run", is_flag=True, help="Say what would happen; change nothing.")
@db_option
@handle_errors
def delete_cmd(job: str, force: bool, purge_history: bool, dry_run: bool,
               db: str | None) -> None:
    """Delete a job: it leaves jobs, schedules and triggers; apply it again to bring it back."""
    engine = get_context(db).engine
    done = engine.delete_job(job, force=force, purge_history=purge_history, dry_run=dry_run)
    click.echo(_deleted(done, dry_run))


def prune_folders(engine: Engine, folders: Iterable[str], defined: set[str],
                  dry_run: bool) -> bool:
    """Delete (keeping history) the jobs applied from `folders` that none of their files
    defines any more; False if one could not be, because a run of it is active."""
    from taskplan.store import job_admin

    ok = True
    for folder in folders:
        with engine.store.read() as tx:
            stale = [j for j in job_admin.jobs_from_folder(tx, folder) if j.name not in defined]
        for j in stale:
            why = (f"{Path(j.source_path).name} is gone" if not Path(j.source_path).exists()
                   else f"{Path(j.source_path).name} no longer defines it")
            try:
                engine.delete_job(j.name, dry_run=dry_run)
            except ConflictError as exc:
                click.echo(f"{j.name}: not removed: {exc}", err=True)
                ok = False
                continue
            verb = "would be removed" if dry_run else "removed"
            click.echo(safe_line(f"{j.name}: {verb} ({why}; history kept)"))  # a file's name
    return ok


@click.command("connections")
@db_option
@json_option
@handle_errors
def connections_cmd(db: str | None, as_json: bool) -> None:
    """The shared connections: taskplan.toml's [connections] and applied connections files."""
    from taskplan.redact import mask_url
    from taskplan.spec.connections import clear_password
    from taskplan.store import connection_ops

    ctx = get_context(db)
    with ctx.engine.store.read() as tx:
        applied = connection_ops.all_connections(tx)
    local = ctx.settings.connections
    where = str(ctx.settings.config_path or "taskplan.toml")
    # taskplan.toml wins over an applied file of the same name (this host's own setting).
    rows = [(c.name, c.url, c.source) for c in applied if c.name not in local]
    rows += [(n, u, where) for n, u in local.items()]
    out = [{"name": n, "url": mask_url(u) if clear_password(u) else u, "source": s}
           for n, u, s in sorted(rows)]
    if as_json:
        print_json(out)
        return
    if not out:
        click.echo("no shared connections ([connections] in taskplan.toml, or apply a"
                   " connections file)")
        return
    for c in out:
        click.echo(f"{c['name']:<20} {c['url']}  ({c['source']})")
