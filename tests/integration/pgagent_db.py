"""A PostgreSQL database with pgAgent's extension, and pgAgent jobs written into its catalog
the way pgAgent's own UI does (rows in pgagent.pga_job, pga_jobstep, pga_schedule,
pga_exception)."""

from __future__ import annotations

import glob
import os
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest

PG_ADMIN_URL = os.environ.get("TASKPLAN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
IN_CI = os.environ.get("CI", "").lower() == "true"
ZONE = "Europe/Paris"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@contextmanager
def pgagent_database(zone: str = ZONE) -> Iterator[str]:
    """A fresh database with `CREATE EXTENSION pgagent` and TimeZone `zone`, dropped after."""
    if os.environ.get("TASKPLAN_TEST_PG", "1") == "0":
        pytest.skip("PostgreSQL tests turned off (TASKPLAN_TEST_PG=0)")
    if not glob.glob("/usr/share/postgresql/*/extension/pgagent.control"):
        _unavailable("pgAgent's extension is not installed (apt-get install pgagent)")
    import psycopg

    try:
        admin = psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL server not reachable at {PG_ADMIN_URL}: {exc}")
    name = f"tp_pga_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        admin.execute(f"ALTER DATABASE \"{name}\" SET timezone = '{zone}'")
    url = f"{PG_ADMIN_URL}/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION pgagent")
        yield url
    finally:
        # Dropping waits for a checkpoint, seconds on a busy machine: done on a thread that the
        # interpreter waits for at exit, like the suite's other databases.
        threading.Thread(target=_drop, args=(name,), name=f"drop {name}").start()


def _drop(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bits(size: int, on: Sequence[int], base: int = 0) -> list[bool]:
    """A pgAgent boolean array with the given positions (values from `base`) set."""
    out = [False] * size
    for v in on:
        out[v - base] = True
    return out


def add_job(conn: Any, name: str, *, steps: Sequence[dict[str, Any]] = (),
            schedules: Sequence[dict[str, Any]] = (), jclid: int = 1, host: str = "",
            enabled: bool = True, desc: str = "") -> tuple[int, list[int]]:
    """Insert a job, its steps and schedules (each with `exceptions`); (jobid, [jscid])."""
    cur = conn.cursor()
    cur.execute("INSERT INTO pgagent.pga_job (jobjclid, jobname, jobdesc, jobhostagent,"
                " jobenabled) VALUES (%s, %s, %s, %s, %s) RETURNING jobid",
                (jclid, name, desc, host, enabled))
    jobid = int(cur.fetchone()[0])
    for s in steps:
        cur.execute(
            "INSERT INTO pgagent.pga_jobstep (jstjobid, jstname, jstenabled, jstkind, jstcode,"
            " jstconnstr, jstdbname, jstonerror) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (jobid, s["name"], s.get("enabled", True), s.get("kind", "b"), s["code"],
             s.get("connstr", ""), s.get("dbname", ""), s.get("onerror", "f")))
    ids = []
    for sc in schedules:
        cur.execute(
            "INSERT INTO pgagent.pga_schedule (jscjobid, jscname, jscenabled, jscstart, jscend,"
            " jscminutes, jschours, jscweekdays, jscmonthdays, jscmonths) VALUES"
            " (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING jscid",
            (jobid, sc.get("name", "s"), sc.get("enabled", True), sc["start"], sc.get("end"),
             sc.get("minutes", bits(60, [])), sc.get("hours", bits(24, [])),
             sc.get("weekdays", bits(7, [])), sc.get("monthdays", bits(32, [])),
             sc.get("months", bits(12, []))))
        jscid = int(cur.fetchone()[0])
        ids.append(jscid)
        for d, t in sc.get("exceptions", ()):
            cur.execute("INSERT INTO pgagent.pga_exception (jexscid, jexdate, jextime)"
                        " VALUES (%s, %s, %s)", (jscid, d, t))
    return jobid, ids


# pga_next_schedule reads now(); it is asked for firings after `after` by passing a start of
# greatest(jscstart, after + 1 minute), which is what it searches from when in the future. An
# error (pgAgent raises on some schedules) comes back as text instead of aborting the batch.
NEXT_FUNCTION = """
CREATE OR REPLACE FUNCTION public.tp_pga_next(id int, after timestamptz,
                                              OUT at timestamptz, OUT err text) AS $$
DECLARE s pgagent.pga_schedule;
BEGIN
    SELECT * INTO s FROM pgagent.pga_schedule WHERE jscid = id;
    at := pgagent.pga_next_schedule(s.jscid, greatest(s.jscstart, after + interval '1 minute'),
                                    s.jscend, s.jscminutes, s.jschours, s.jscweekdays,
                                    s.jscmonthdays, s.jscmonths);
EXCEPTION WHEN OTHERS THEN
    err := SQLERRM;
END $$ LANGUAGE plpgsql"""


def pga_next(conn: Any, calls: Sequence[tuple[int, datetime]]
             ) -> list[tuple[datetime | None, str | None]]:
    """pgAgent's next firing for each (jscid, after), in one statement."""
    conn.execute(NEXT_FUNCTION)
    rows = conn.execute(
        "SELECT (public.tp_pga_next(c.id, c.after)).* FROM unnest(%s::int[], %s::timestamptz[])"
        " WITH ORDINALITY AS c(id, after, n) ORDER BY c.n",
        ([c[0] for c in calls], [c[1] for c in calls])).fetchall()
    return [(r[0], r[1]) for r in rows]
