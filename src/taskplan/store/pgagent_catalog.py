"""Read pgAgent's catalog (`pgagent.pga_*`) from the user's PostgreSQL database.

This is the user's database, not taskplan's store: it is read with psycopg directly, in one
read-only transaction, and the rows come back as plain dataclasses for `importers.pgagent`
(the pure converter). It lives in store/ because store/ holds every line of SQL taskplan runs,
including what it reads from a pgAgent catalog it imports.
"""

from __future__ import annotations

from dataclasses import field
from datetime import date, datetime, time
from typing import Any

from taskplan.dataclass import dataclass


class CatalogError(Exception):
    """The catalog cannot be read: unreachable server, or no pgAgent schema there."""


@dataclass(frozen=True)
class PgException:
    id: int
    date: date | None
    time: time | None
    # A date or time no firing can have, as PostgreSQL writes it ('infinity', a year past
    # 9999, '24:00:00'); `date` and `time` are None then.
    never: str | None = None


@dataclass(frozen=True)
class PgSchedule:
    id: int
    name: str
    description: str
    enabled: bool
    start: datetime | None  # aware; None: before year 1 ('-infinity'), from the first minute
    end: datetime | None  # None: no end, or after year 9999 ('infinity')
    minutes: tuple[bool, ...]  # 60
    hours: tuple[bool, ...]  # 24
    weekdays: tuple[bool, ...]  # 7, Sunday first
    monthdays: tuple[bool, ...]  # 32, the 32nd is "last day"
    months: tuple[bool, ...]  # 12
    exceptions: tuple[PgException, ...] = ()
    # A bound Python's datetime cannot hold: start after year 9999 ('infinity': it never
    # fires), end before year 1 ('-infinity': it never fires either).
    never_starts: bool = False
    ended_before_time: bool = False


@dataclass(frozen=True)
class PgStep:
    id: int
    name: str
    description: str
    enabled: bool
    kind: str  # s (sql) | b (batch)
    code: str
    connstr: str
    dbname: str
    on_error: str  # f | s | i


@dataclass(frozen=True)
class PgJob:
    id: int
    name: str
    description: str
    job_class: str
    host_agent: str
    enabled: bool
    steps: tuple[PgStep, ...] = ()  # in pgAgent's order of execution (jstname, jstid)
    schedules: tuple[PgSchedule, ...] = ()


@dataclass(frozen=True)
class Catalog:
    timezone: str  # the session's TimeZone: what pgAgent's schedule maths run in
    host: str  # where the catalog was read: the default server for `jstdbname` steps
    port: int
    user: str
    jobs: tuple[PgJob, ...] = field(default_factory=tuple)
    password: bool = False  # whether the catalog's connection used one (steps on its server)


_JOBS = """
SELECT j.jobid, j.jobname, j.jobdesc, coalesce(c.jclname, ''), j.jobhostagent, j.jobenabled
  FROM pgagent.pga_job j LEFT JOIN pgagent.pga_jobclass c ON c.jclid = j.jobjclid
 ORDER BY j.jobid"""
# pgAgent runs a job's enabled steps ORDER BY jstname, jstid (in the server's collation).
_STEPS = """
SELECT jstjobid, jstid, jstname, jstdesc, jstenabled, jstkind, jstcode, jstconnstr,
       jstdbname::text, jstonerror
  FROM pgagent.pga_jobstep ORDER BY jstjobid, jstname, jstid"""
# Bounds and exceptions Python's datetime cannot hold ('infinity', years past 9999, a time of
# 24:00) come back as NULL with a flag (or their text): one such row made the whole catalog
# unreadable. A day's margin at each end keeps every local wall of an instant in range.
_SCHEDULES = """
SELECT jscjobid, jscid, jscname, jscdesc, jscenabled,
       CASE WHEN jscstart BETWEEN '0001-01-03Z' AND '9999-12-29Z' THEN jscstart END,
       CASE WHEN jscend BETWEEN '0001-01-03Z' AND '9999-12-29Z' THEN jscend END,
       jscminutes, jschours, jscweekdays, jscmonthdays, jscmonths,
       coalesce(jscstart > '9999-12-29Z', false), coalesce(jscend < '0001-01-03Z', false)
  FROM pgagent.pga_schedule ORDER BY jscjobid, jscid"""
_EXCEPTIONS = """
SELECT jexscid, jexid,
       CASE WHEN jexdate BETWEEN '0001-01-01' AND '9999-12-31' THEN jexdate END,
       CASE WHEN jextime < '24:00' THEN jextime END,
       CASE WHEN NOT jexdate BETWEEN '0001-01-01' AND '9999-12-31' THEN 'date ' || jexdate
            WHEN jextime >= '24:00' THEN 'time ' || jextime END
  FROM pgagent.pga_exception ORDER BY jexscid, jexid"""


def _bools(value: Any, size: int) -> tuple[bool, ...]:
    got = tuple(bool(v) for v in (value or ()))
    return (got + (False,) * size)[:size]


def read_catalog(url: str) -> Catalog:
    """Every pgAgent job with its steps, schedules and exceptions; CatalogError if unreadable."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - the postgres extra is missing
        raise CatalogError("reading pgAgent needs psycopg: pip install 'taskplan[postgres]'"
                           ) from exc
    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        conn = psycopg.connect(dsn, connect_timeout=10, autocommit=False)
    except (psycopg.Error, ValueError) as exc:
        raise CatalogError(f"cannot connect: {_first_line(exc)}") from None
    try:
        with conn:
            conn.read_only = True
            cur = conn.cursor()
            # psycopg reads dates and times written in ISO style only; a database set to
            # German, SQL or Postgres style is read the same, only written otherwise.
            cur.execute("SET LOCAL DateStyle = ISO")
            cur.execute("SELECT to_regclass('pgagent.pga_schedule') IS NOT NULL")
            (present,) = cur.fetchone() or (False,)
            if not present:
                raise CatalogError(
                    f"database {conn.info.dbname!r} has no pgAgent catalog (schema pgagent with"
                    " pga_job, pga_jobstep, pga_schedule); is the pgagent extension installed"
                    " there?")
            cur.execute("SHOW timezone")
            (zone,) = cur.fetchone() or ("UTC",)
            cur.execute(_EXCEPTIONS)
            exceptions: dict[int, list[PgException]] = {}
            for scid, exid, d, t, never in cur.fetchall():
                exceptions.setdefault(int(scid), []).append(PgException(int(exid), d, t, never))
            cur.execute(_SCHEDULES)
            schedules: dict[int, list[PgSchedule]] = {}
            for (job_id, sc_id, name, desc, enabled, start, end, minutes, hours, weekdays,
                 monthdays, months, never_starts, ended) in cur.fetchall():
                schedules.setdefault(int(job_id), []).append(PgSchedule(
                    id=int(sc_id), name=str(name), description=str(desc or ""),
                    enabled=bool(enabled), start=start, end=end, minutes=_bools(minutes, 60),
                    hours=_bools(hours, 24), weekdays=_bools(weekdays, 7),
                    monthdays=_bools(monthdays, 32), months=_bools(months, 12),
                    exceptions=tuple(exceptions.get(int(sc_id), ())),
                    never_starts=bool(never_starts), ended_before_time=bool(ended)))
            cur.execute(_STEPS)
            steps: dict[int, list[PgStep]] = {}
            for (job_id, st_id, name, desc, enabled, kind, code, connstr, dbname,
                 on_error) in cur.fetchall():
                steps.setdefault(int(job_id), []).append(PgStep(
                    id=int(st_id), name=str(name), description=str(desc or ""),
                    enabled=bool(enabled), kind=str(kind), code=str(code or ""),
                    connstr=str(connstr or ""), dbname=str(dbname or ""),
                    on_error=str(on_error)))
            cur.execute(_JOBS)
            jobs = tuple(
                PgJob(id=int(job_id), name=str(name), description=str(desc or ""),
                      job_class=str(job_class), host_agent=str(host_agent or ""),
                      enabled=bool(enabled), steps=tuple(steps.get(int(job_id), ())),
                      schedules=tuple(schedules.get(int(job_id), ())))
                for job_id, name, desc, job_class, host_agent, enabled in cur.fetchall())
            info = conn.info
            return Catalog(timezone=str(zone), host=info.host, port=int(info.port),
                           user=info.user, jobs=jobs, password=bool(info.password))
    except psycopg.Error as exc:
        raise CatalogError(f"cannot read the pgAgent catalog: {_first_line(exc)}") from None
    finally:
        conn.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
