"""`validate`, `apply` and `jobs`: job definitions in and out of the store."""

from __future__ import annotations

import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from taskplan import shapes
from taskplan.cli.common import (
    EXIT_BAD_INPUT,
    db_option,
    get_context,
    handle_errors,
    json_option,
    print_json,
    share_connections,
    short_time,
)
from taskplan.errors import DefinitionError
from taskplan.spec import Definitions, expand_paths, load_definitions, validate_files
from taskplan.store import reports
from taskplan.store.urls import mask_url


def _report(problems: list[object]) -> None:
    for p in problems:
        click.echo(mask_url(str(p)), err=True)


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@db_option
@handle_errors
def validate_cmd(files: tuple[str, ...], db: str | None) -> None:
    """Check job files and print every error with file:line:column."""
    # The store is only read, for the names of the shared connections applied to it.
    share_connections(get_context(db))
    problems = validate_files(list(files))
    if problems:
        _report(list(problems))
        click.echo(f"{len(problems)} problem(s)", err=True)
        sys.exit(EXIT_BAD_INPUT)
    click.echo("ok")


@click.command("apply")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--prune", is_flag=True,
              help="Also delete the jobs applied from these folders that no file there defines"
                   " any more (their run history is kept).")
@click.option("--dry-run", "dry_run", is_flag=True, help="Print what would change; change nothing.")
@db_option
@handle_errors
def apply_cmd(paths: tuple[str, ...], prune: bool, dry_run: bool, db: str | None) -> None:
    """Validate job files (or folders of them) and store them; a change makes a new version."""
    for p in paths:
        if not Path(p).exists():
            click.echo(f"{p}: no such file or folder", err=True)
            sys.exit(EXIT_BAD_INPUT)
        if prune and not Path(p).is_dir():
            click.echo(f"{p}: --prune takes folders of job files, not files", err=True)
            sys.exit(EXIT_BAD_INPUT)
    # A pruned folder may have no job file left: nothing to load there, everything to prune.
    loadable = [p for p in paths if not prune or expand_paths([p])]
    share_connections(get_context(db))
    try:
        found = (load_definitions(loadable) if loadable  # all valid before any is stored
                 else Definitions([], []))
    except DefinitionError as exc:
        _report(list(exc.problems))
        sys.exit(EXIT_BAD_INPUT)
    engine = get_context(db).engine
    _check_calendar_names(engine, found)
    _apply_connections(engine, found, dry_run)
    for cal in found.calendars:  # first: the jobs of the same command may name them
        if dry_run:
            click.echo(f"calendar {cal.name}: would be applied")
            continue
        number, changed = engine.apply_calendar(cal)
        click.echo(f"calendar {cal.name}: version {number} "
                   f"({'new' if changed else 'unchanged'})")
    specs = found.jobs
    for spec in specs:
        if dry_run:
            number, changed = engine.apply_preview(spec)
            click.echo(f"{spec.name}: would be version {number}"
                       f" ({'new' if changed else 'unchanged'})")
            continue
        _, number, changed = engine.apply(spec)
        click.echo(f"{spec.name}: version {number} ({'new' if changed else 'unchanged'})")
    if prune:
        from taskplan.cli.job_cmds import prune_folders

        if not prune_folders(engine, paths, {s.name for s in specs}, dry_run):
            sys.exit(EXIT_BAD_INPUT)


def _apply_connections(engine: Any, found: Definitions, dry_run: bool) -> None:
    """Store the shared connections of connections files (URLs as written, never resolved)."""
    if not found.connections:
        return
    import time

    from taskplan.store import connection_ops

    if dry_run:
        for name in sorted(found.connections):
            click.echo(f"connection {name}: would be applied")
        return
    with engine.store.tx() as tx:
        for name, (url, source) in sorted(found.connections.items()):
            what = connection_ops.upsert(tx, name, url, os.path.abspath(source), time.time())
            click.echo(f"connection {name}: {what}")


def _check_calendar_names(engine: Any, found: Definitions) -> None:
    """Refuse, before storing anything, jobs that name a calendar neither applied nor given."""
    from taskplan.timing import calendar_names

    needed = {(spec.source_path, spec.name, name)
              for spec in found.jobs for name in calendar_names(spec)}
    if not needed:
        return
    known = set(engine.business_calendars()) | {c.name for c in found.calendars}
    missing = sorted(n for n in needed if n[2] not in known)
    for path, job, name in missing:
        click.echo(f"{path}: job {job} names calendar {name!r}, which is not applied "
                   "(apply its file first, or with this one)", err=True)
    if missing:
        sys.exit(EXIT_BAD_INPUT)


def _next_firing(engine: object, version_id: int, tz: str) -> datetime | None:
    from taskplan.engine import Engine
    from taskplan.timing import next_firings

    assert isinstance(engine, Engine)
    spec = engine.job_spec(version_id)
    if not spec.schedules:
        return None
    from taskplan.timing import calendar_names

    calendars = engine.closed_days().closed if calendar_names(spec) else None
    try:
        found = next_firings(spec, datetime.now().astimezone(), 1, default_tz=tz,
                             calendars=calendars)
    except ValueError:  # a calendar it names is gone: no firing to show
        return None
    return found[0][0] if found else None


def _trigger_waits(engine: object, version_id: int) -> list[dict[str, object]]:
    """Each cross-job trigger of the job, with the upstream jobs it still waits for."""
    import time

    from taskplan.engine import Engine
    from taskplan.engine.triggers import trigger_waits

    assert isinstance(engine, Engine)
    spec = engine.job_spec(version_id)
    with engine.store.read() as tx:
        return trigger_waits(tx, version_id, spec.triggers, time.time())


@click.command("jobs")
@db_option
@json_option
@handle_errors
def jobs_cmd(db: str | None, as_json: bool) -> None:
    """Jobs with their version, next firing and last run."""
    ctx = get_context(db)
    engine = ctx.engine
    with engine.store.read() as tx:
        rows = reports.jobs(tx)
    specs = [engine.job_spec(j.version_id) for j in rows]
    out = [shapes.job(j, None if j.paused else _next_firing(engine, j.version_id,
                                                            ctx.settings.timezone),
                      _trigger_waits(engine, j.version_id), enabled=spec.enabled,
                      tags=spec.tags) for j, spec in zip(rows, specs, strict=True)]
    if as_json:
        print_json(out)
        return
    if not out:
        click.echo("no jobs (taskplan apply FILE to add one)")
        return
    click.echo(f"{'JOB':<28} {'VER':>4} {'NEXT FIRING':<26} {'LAST RUN':<22}")
    for row, j in zip(out, rows, strict=True):
        last = f"{j.last_run_id} {j.last_state}" if j.last_run_id else "-"
        nxt_text = "paused" if j.paused else str(row["next"] or "-")
        flags = ("  [disabled]" if not row["enabled"] else "") + "".join(
            f"  #{tag}" for tag in row["tags"])
        click.echo(f"{j.name:<28} {j.version:>4} {nxt_text:<26} {last:<22}"
                   f" {short_time(j.last_finished_at) if j.last_finished_at else ''}{flags}")
        for t in row["triggers"]:
            waits = ", ".join(t["waiting"]) or "nothing (fires when an upstream run ends)"
            click.echo(f"  trigger {t['index']} (after {', '.join(t['after'])}) waits for: "
                       + waits)
