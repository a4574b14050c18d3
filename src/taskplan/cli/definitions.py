"""`validate`, `apply` and `jobs`: job definitions in and out of the store."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from taskplan import shapes
from taskplan.cli.common import (
    EXIT_BAD_INPUT,
    Context,
    db_option,
    get_context,
    handle_errors,
    json_option,
    print_json,
    share_connections,
    short_time,
)
from taskplan.cli.terminal_text import safe_line
from taskplan.errors import DefinitionError, Problem, StoreUnavailableError
from taskplan.model import JobSpec
from taskplan.spec import Definitions, expand_paths, load_definitions
from taskplan.spec.loader import check_definitions
from taskplan.store import reports
from taskplan.store.urls import mask_url


def _report(problems: list[object]) -> None:
    for p in problems:
        # A problem quotes the file: its name and keys may hold escape sequences.
        click.echo(safe_line(mask_url(str(p))), err=True)


@click.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@db_option
@handle_errors
def validate_cmd(files: tuple[str, ...], db: str | None) -> None:
    """Check job files and print every error with file:line:column."""
    # The store is only read, for the names of the shared connections applied to it.
    ctx = get_context(db)
    share_connections(ctx)
    found, problems = check_definitions(list(files))
    # Which calendars exist is the store's to say: with no store (or none reachable), none is
    # known to be missing; and a file that names none needs no store at all.
    if _names_calendars(found) and _reachable_store(ctx):
        problems += calendar_problems(ctx, found, _shown_paths(files))
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
        if not os.path.lexists(p):  # a looping link is there: the reader says what it is
            click.echo(f"{p}: no such file or folder", err=True)
            sys.exit(EXIT_BAD_INPUT)
        if prune and not Path(p).is_dir():
            click.echo(f"{p}: --prune takes folders of job files, not files", err=True)
            sys.exit(EXIT_BAD_INPUT)
    # A pruned folder may have no job file left: nothing to load there, everything to prune.
    loadable = [p for p in paths if not prune or expand_paths([p])]
    ctx = get_context(db)
    share_connections(ctx)
    try:
        found = (load_definitions(loadable) if loadable  # all valid before any is stored
                 else Definitions([], []))
    except DefinitionError as exc:
        _report(list(exc.problems))
        sys.exit(EXIT_BAD_INPUT)
    refuse_unknown_calendars(ctx, found, _shown_paths(loadable))
    if dry_run and ctx.existing_store() is None:
        # Nothing to compare with, and a dry run must not create the store to find that out.
        _preview_new_store(ctx, found)
        return
    engine = ctx.engine
    engine.check_calls(found.jobs)  # a cycle through stored jobs: refused before any write
    _apply_connections(engine, found, dry_run)
    for cal in found.calendars:  # first: the jobs of the same command may name them
        if dry_run:
            number, changed = engine.calendar_preview(cal)
            click.echo(f"calendar {cal.name}: would be version {number}"
                       f" ({'new' if changed else 'unchanged'})")
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
    for warning in engine.unknown_job_names(specs):
        click.echo(f"warning: {warning}", err=True)
    if prune:
        from taskplan.cli.job_cmds import prune_folders

        if not prune_folders(engine, paths, {s.name for s in specs}, dry_run):
            sys.exit(EXIT_BAD_INPUT)


def _preview_new_store(ctx: Context, found: Definitions) -> None:
    """`apply --dry-run` against a store that does not exist: everything would be new, and
    nothing applied from a folder could be pruned."""
    click.echo(f"store {mask_url(ctx.settings.db)}: would be created")
    for name in sorted(found.connections):
        click.echo(f"connection {name}: would be applied")
    for cal in found.calendars:
        click.echo(f"calendar {cal.name}: would be version 1 (new)")
    for spec in found.jobs:
        click.echo(f"{spec.name}: would be version 1 (new)")


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


def _shown_paths(paths: Iterable[str]) -> dict[str, str]:
    """Each job file's absolute path (a JobSpec's source_path) -> the path as given."""
    return {os.path.abspath(p): str(p) for p in expand_paths(list(paths))}


def _shown(path: str) -> str:
    """A path for a message: relative to the current folder when it is below it."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _names_calendars(found: Definitions) -> bool:
    from taskplan.timing import calendar_names

    return any(calendar_names(spec) for spec in found.jobs)


def _reachable_store(ctx: Context) -> bool:
    try:
        return ctx.existing_store() is not None
    except StoreUnavailableError:
        return False


def calendar_problems(ctx: Context, found: Definitions,
                      shown: Mapping[str, str] | None = None) -> list[Problem]:
    """A problem at each `calendar:` of `found`'s jobs naming a calendar that is neither
    applied to the store nor among `found`'s calendars. A store that does not exist holds
    none, and is not created to find that out."""
    from taskplan.spec.loader import calendar_references
    from taskplan.store import calendars as calendar_ops
    from taskplan.timing import calendar_names

    needed = {name for spec in found.jobs for name in calendar_names(spec)}
    known = {c.name for c in found.calendars}
    if not needed - known:
        return []
    store = ctx.existing_store()
    if store is not None:
        with store.read() as tx:
            known |= {c.name for c in calendar_ops.current_calendars(tx)}
    words = ("calendars applied or given: " + ", ".join(sorted(known))) if known \
        else "no calendar is applied to this store"
    import difflib  # only on the way to an error

    problems: list[Problem] = []
    for spec in found.jobs:
        missing = calendar_names(spec) - known
        if not missing:
            continue
        path = (shown or {}).get(spec.source_path) or _shown(spec.source_path)
        try:
            refs = calendar_references(spec.source_path, path)
        except DefinitionError:  # the file went away since it was loaded
            refs = []
        placed = {name for name, _, _ in refs}
        refs += [(name, 1, 1) for name in missing - placed]
        for name, line, col in sorted(refs, key=lambda r: (r[1], r[2])):
            if name in missing:
                guess = difflib.get_close_matches(name, sorted(known), n=1)
                hint = f"; did you mean {guess[0]!r}?" if guess else ""
                problems.append(Problem(
                    path, line, col, f"unknown calendar {name!r}: it is neither applied to this"
                    f" store nor given in this command ({words}); apply its calendar file"
                    f" first, or with this job{hint}"))
    return problems


def refuse_unknown_calendars(ctx: Context, found: Definitions | JobSpec,
                             shown: Mapping[str, str] | None = None) -> None:
    """DefinitionError, before anything is stored (or a store created), if a job names a
    calendar neither applied to the store nor given with it. `run FILE` calls it with its
    job (a JobSpec) before it opens the store for writing."""
    if isinstance(found, JobSpec):
        found = Definitions([found], [])
    problems = calendar_problems(ctx, found, shown)
    if problems:
        raise DefinitionError(problems)


def _next_firing(engine: object, version_id: int, tz: str, paused: set[str]
                 ) -> datetime | None:
    from taskplan.engine import Engine
    from taskplan.timing import next_firings

    assert isinstance(engine, Engine)
    from taskplan.timing import calendar_names, without_schedules

    spec = without_schedules(engine.job_spec(version_id), paused)
    if not spec.schedules:
        return None

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
    from taskplan.store import sched_ops

    with engine.store.read() as tx:
        rows = reports.jobs(tx)
        paused = sched_ops.paused_schedules_by_job(tx)
    specs = [engine.job_spec(j.version_id) for j in rows]
    out = [shapes.job(j, None if j.paused else _next_firing(engine, j.version_id,
                                                            ctx.settings.timezone,
                                                            paused.get(j.job_id, set())),
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
