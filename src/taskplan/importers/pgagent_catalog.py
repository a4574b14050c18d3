"""Read pgAgent's catalog (`pgagent.pga_*`) from the user's PostgreSQL database.

This is the user's database, not taskplan's store: it is read with psycopg directly, in one
read-only transaction, and the rows come back as plain dataclasses for `importers.pgagent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any


class CatalogError(Exception):
    """The catalog cannot be read: unreachable server, or no pgAgent schema there."""


@dataclass(frozen=True)
class PgException:
    id: int
    date: date | None
    time: time | None


@dataclass(frozen=True)
class PgSchedule:
    id: int
    name: str
    description: str
    enabled: bool
    start: datetime  # aware
    end: datetime | None
    minutes: tuple[bool, ...]  # 60
    hours: tuple[bool, ...]  # 24
    weekdays: tuple[bool, ...]  # 7, Sunday first
    monthdays: tuple[bool, ...]  # 32, the 32nd is "last day"
    months: tuple[bool, ...]  # 12
    exceptions: tuple[PgException, ...] = ()


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


_JOBS = """
SELECT j.jobid, j.jobname, j.jobdesc, coalesce(c.jclname, ''), j.jobhostagent, j.jobenabled
  FROM pgagent.pga_job j LEFT JOIN pgagent.pga_jobclass c ON c.jclid = j.jobjclid
 ORDER BY j.jobid"""
# pgAgent runs a job's enabled steps ORDER BY jstname, jstid (in the server's collation).
_STEPS = """
SELECT jstjobid, jstid, jstname, jstdesc, jstenabled, jstkind, jstcode, jstconnstr,
       jstdbname::text, jstonerror
  FROM pgagent.pga_jobstep ORDER BY jstjobid, jstname, jstid"""
_SCHEDULES = """
SELECT jscjobid, jscid, jscname, jscdesc, jscenabled, jscstart, jscend, jscminutes, jschours,
       jscweekdays, jscmonthdays, jscmonths
  FROM pgagent.pga_schedule ORDER BY jscjobid, jscid"""
_EXCEPTIONS = """
SELECT jexscid, jexid, jexdate, jextime FROM pgagent.pga_exception ORDER BY jexscid, jexid"""


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
            cur.execute("SELECT to_regclass('pgagent.pga_schedule') IS NOT NULL")
            row = cur.fetchone()
            if not row or not row[0]:
                raise CatalogError(
                    f"database {conn.info.dbname!r} has no pgAgent catalog (schema pgagent with"
                    " pga_job, pga_jobstep, pga_schedule); is the pgagent extension installed"
                    " there?")
            cur.execute("SHOW timezone")
            tz_row = cur.fetchone()
            zone = str(tz_row[0]) if tz_row else "UTC"
            cur.execute(_EXCEPTIONS)
            exceptions: dict[int, list[PgException]] = {}
            for scid, exid, d, t in cur.fetchall():
                exceptions.setdefault(int(scid), []).append(PgException(int(exid), d, t))
            cur.execute(_SCHEDULES)
            schedules: dict[int, list[PgSchedule]] = {}
            for r in cur.fetchall():
                schedules.setdefault(int(r[0]), []).append(PgSchedule(
                    id=int(r[1]), name=str(r[2]), description=str(r[3] or ""),
                    enabled=bool(r[4]), start=r[5], end=r[6], minutes=_bools(r[7], 60),
                    hours=_bools(r[8], 24), weekdays=_bools(r[9], 7),
                    monthdays=_bools(r[10], 32), months=_bools(r[11], 12),
                    exceptions=tuple(exceptions.get(int(r[1]), ()))))
            cur.execute(_STEPS)
            steps: dict[int, list[PgStep]] = {}
            for r in cur.fetchall():
                steps.setdefault(int(r[0]), []).append(PgStep(
                    id=int(r[1]), name=str(r[2]), description=str(r[3] or ""),
                    enabled=bool(r[4]), kind=str(r[5]), code=str(r[6] or ""),
                    connstr=str(r[7] or ""), dbname=str(r[8] or ""), on_error=str(r[9])))
            cur.execute(_JOBS)
            jobs = tuple(
                PgJob(id=int(r[0]), name=str(r[1]), description=str(r[2] or ""),
                      job_class=str(r[3]), host_agent=str(r[4] or ""), enabled=bool(r[5]),
                      steps=tuple(steps.get(int(r[0]), ())),
                      schedules=tuple(schedules.get(int(r[0]), ())))
                for r in cur.fetchall())
            info = conn.info
            return Catalog(timezone=zone, host=info.host, port=int(info.port),
                           user=info.user, jobs=jobs)
    except psycopg.Error as exc:
        raise CatalogError(f"cannot read the pgAgent catalog: {_first_line(exc)}") from None
    finally:
        conn.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0]
