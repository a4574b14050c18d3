"""`taskplan import pgagent|crontab`: job files from another scheduler (docs/migrating.md)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import click

from taskplan.cli.common import (
    EXIT_BAD_INPUT,
    db_option,
    fail,
    get_context,
    handle_errors,
    json_option,
    print_json,
)
from taskplan.cli.terminal_text import safe_line
from taskplan.importers.documents import Imported, WriteError, write_all


@click.group("import")
def import_group() -> None:
    """Write job files from pgAgent's catalog or a crontab."""


def _finish(items: list[Imported], out_dir: Path, apply: bool, db: str | None,
            as_json: bool) -> None:
    """Validate and write every document, apply them if asked, and report job by job."""
    engines: list[Any] = []
    try:
        # The store is opened before any file is moved in: one that cannot be reached (exit
        # 3) leaves no file written that it does not hold.
        written = write_all(items, out_dir,
                            (lambda: engines.append(get_context(db).engine)) if apply else None)
    except WriteError as exc:
        fail(f"import: {exc}", EXIT_BAD_INPUT)
    applied: dict[str, int] = {}
    if apply:
        engine = engines[0] if engines else get_context(db).engine
        for item in items:
            if item.spec is not None:
                _, applied[item.name], _ = engine.apply(item.spec)
    if as_json:
        print_json([{
            "job": item.name if item.document is not None else None,
            "source": item.origin, "file": str(item.path) if item.document else None,
            "version": applied.get(item.name), "not_expressed": item.notes,
        } for item in items])
        return
    # A crontab line or a pgAgent name may hold escape sequences: shown, not sent to the
    # terminal.
    for item in items:
        if item.document is None:
            click.echo(f"{safe_line(item.origin)}: not imported")
        else:
            version = f", applied as version {applied[item.name]}" if item.name in applied \
                else ""
            click.echo(f"{safe_line(str(item.path))}: {safe_line(item.origin)}{version}")
        for note in item.notes:
            click.echo(f"  not expressed: {safe_line(note)}")
    if not written:
        click.echo(f"no job file written ({out_dir} left as it was)")
        return
    click.echo(f"{written} job file(s) written to {out_dir}"
               + (f", {len(applied)} applied" if apply else ""))


# A password in a libpq key=value string (`host=db password='s e cret'`), which --from takes as
# psycopg does; fail() masks those of URLs.
_CONNINFO_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)")


_JOBS_SHOWN = 10  # the names an unknown --job lists, of a catalog of any size


def _masked_conninfo(text: str) -> str:
    return _CONNINFO_PASSWORD.sub(r"\1***", text)


def _is_zone(name: str) -> bool:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _zone_note(db: str | None) -> str | None:
    """What to say of a crontab entry written without a zone when this machine's local zone
    (where cron runs entries without CRON_TZ, if the crontab is from here) is not the zone
    taskplan will run it in; None when they agree or the local zone has no IANA name."""
    local = _local_zone()
    default = get_context(db).settings.timezone
    if local is None or _same_offsets(local, default):
        return None
    return (f"cron ran it in its machine's local time ({local} here); written without"
            f" timezone:, it runs in taskplan's zone {default}: give --timezone {local} (or"
            " CRON_TZ) if the crontab is from this machine")


def _local_zone() -> str | None:
    """This machine's zone name: TZ, else what /etc/localtime links to."""
    name = os.environ.get("TZ", "").lstrip(":")
    if not name:
        target = os.path.realpath("/etc/localtime")
        name = target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else ""
    return name if name and _is_zone(name) else None


def _same_offsets(a: str, b: str) -> bool:
    """Whether two zones keep the same UTC offsets now and over the next two years."""
    from datetime import UTC, datetime, timedelta
    from zoneinfo import ZoneInfo

    now = datetime.now(UTC)
    instants = [now + timedelta(days=15 * i) for i in range(50)]
    return all(t.astimezone(ZoneInfo(a)).utcoffset() == t.astimezone(ZoneInfo(b)).utcoffset()
               for t in instants)


def _out_option(fn: Any) -> Any:
    return click.option("--out", "out", default=".", show_default=True, metavar="DIR",
                        type=click.Path(file_okay=False),
                        help="Folder for the job files (created if missing when there is one "
                             "to write).")(fn)


def _apply_option(fn: Any) -> Any:
    return click.option("--apply", "apply", is_flag=True,
                        help="Also store the imported jobs (like taskplan apply).")(fn)


@import_group.command("pgagent")
@click.option("--from", "source", required=True, metavar="POSTGRES_URL",
              help="The database holding pgAgent's catalog (schema pgagent).")
@_out_option
@click.option("--job", "names", multiple=True, metavar="NAME",
              help="Import only this pgAgent job (its name or id); repeatable.")
@_apply_option
@click.option("--timezone", "timezone", default=None, metavar="TZ",
              help="Zone of the schedules (default: the server's TimeZone setting).")
@db_option
@json_option
@handle_errors
def pgagent_cmd(source: str, out: str, names: tuple[str, ...], apply: bool,
                timezone: str | None, db: str | None, as_json: bool) -> None:
    """Job files from pgAgent's catalog: one per job, steps as tasks, schedules alike."""
    from taskplan.importers.pgagent import convert
    from taskplan.store.pgagent_catalog import CatalogError, read_catalog

    try:
        catalog = read_catalog(source)
    except CatalogError as exc:
        fail(_masked_conninfo(f"import pgagent --from {source}: {exc}"), EXIT_BAD_INPUT)
    zone = timezone or catalog.timezone
    if not _is_zone(zone):
        where = "--timezone" if timezone else "the server's TimeZone setting"
        fail(f"import pgagent: {where} {zone!r} is not an IANA time zone name"
             + ("" if timezone else "; give one with --timezone"), EXIT_BAD_INPUT)
    items = convert(catalog, zone)
    if names:
        wanted: list[Imported] = []
        for name in names:
            found = [item for item, job in zip(items, catalog.jobs, strict=True)
                     if name in (job.name, str(job.id), item.name)]
            if not found:
                shown = [repr(j.name) for j in catalog.jobs[:_JOBS_SHOWN]]
                more = len(catalog.jobs) - len(shown)
                known = ", ".join(shown) + (f" and {more} more" if more > 0 else "") or "none"
                fail(f"import pgagent: no pgAgent job {name!r} (jobs: {known})", EXIT_BAD_INPUT)
            wanted.extend(f for f in found if f not in wanted)
        items = wanted
    _finish(items, Path(out), apply, db, as_json)


@import_group.command("crontab")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@_out_option
@_apply_option
@click.option("--timezone", "timezone", default=None, metavar="TZ",
              help="Zone of entries before any CRON_TZ line (default: the config's).")
@click.option("--system", "system", is_flag=True,
              help="A system crontab (a user field before the command); the default for "
                   "/etc/crontab and /etc/cron.d/*.")
@db_option
@json_option
@handle_errors
def crontab_cmd(file: str, out: str, apply: bool, timezone: str | None, system: bool,
                db: str | None, as_json: bool) -> None:
    """Job files from a crontab: one per entry; environment lines become task env."""
    from taskplan.errors import DefinitionError
    from taskplan.importers.crontab import convert_crontab
    from taskplan.spec.reading import read_source

    if timezone is not None and not _is_zone(timezone):
        fail(f"import crontab: --timezone {timezone!r} is not an IANA time zone name",
             EXIT_BAD_INPUT)
    path = Path(file)
    shown = "stdin" if file == "-" else file
    try:
        # The job files' reader and bounds: a regular file only (/dev/zero never ends, a named
        # pipe waits for a writer), at most what a job file may hold, UTF-8 or the position of
        # the first byte that is not. `-`, asked for by name (crontab -l | ...), is read with
        # the same bounds.
        text = _read_stdin() if file == "-" else read_source(path, file)[1]
    except DefinitionError as exc:
        problem = exc.problems[0]
        fail(f"{problem.file}:{problem.line}:{problem.col}: cannot import the crontab:"
             f" {problem.message}", EXIT_BAD_INPUT)
    if file != "-":
        where = path.resolve()
        system = system or where == Path("/etc/crontab") or where.parent == Path("/etc/cron.d")
    items = convert_crontab(text, shown, timezone, system=system,
                            unzoned_note=None if timezone else _zone_note(db))
    _finish(items, Path(out), apply, db, as_json)


def _read_stdin() -> str:
    """Standard input as a crontab file is read: at most what a job file may hold, UTF-8."""
    import sys

    from taskplan.errors import DefinitionError, Problem
    from taskplan.spec.reading import MAX_DOCUMENT_BYTES
    from taskplan.spec.source import too_large
    from taskplan.utf8 import NotUtf8, decode

    try:
        raw = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise DefinitionError([Problem("stdin", 1, 1, f"cannot read standard input:"
                                       f" {exc.strerror or exc}")]) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise DefinitionError([too_large(raw.decode("utf-8", errors="replace"), "stdin")])
    try:
        return decode(raw)
    except NotUtf8 as exc:
        raise DefinitionError([Problem("stdin", exc.line, exc.col, exc.message)]) from None
