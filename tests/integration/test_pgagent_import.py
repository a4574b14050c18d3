"""`taskplan import pgagent` end to end: pgAgent jobs written into its catalog, imported through
the CLI, the files checked, applied and run; and the bad inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import pytest
from pgagent_db import PG_ADMIN_URL, add_job, bits, pgagent_database

from taskplan.spec import load_job_file

TASKPLAN = str(Path(sys.executable).parent / "taskplan")
START = datetime(2030, 1, 1, 5, 0, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def pga() -> Iterator[tuple[str, Any]]:
    import psycopg

    with pgagent_database() as url, psycopg.connect(url, autocommit=True) as conn:
        yield url, conn


def taskplan(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TASKPLAN, "--db", f"sqlite:///{cwd / 'tp.db'}", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_a_job_with_everything_pgagent_has(pga: tuple[str, Any], tmp_path: Path) -> None:
    url, conn = pga
    dbname = url.rsplit("/", 1)[1]
    add_job(conn, "Nightly Load!", desc="load the mart", jclid=2, host="etl-1", enabled=False,
            steps=[
                # pgAgent runs steps by name: c, then a_..., then b
                {"name": "b shell", "code": "echo b", "onerror": "i"},
                {"name": "a sql", "kind": "s", "code": "SELECT 1", "dbname": dbname},
                {"name": "c", "kind": "s", "code": "SELECT 2", "onerror": "s",
                 "connstr": "host=db.example port=5433 dbname=mart user=etl password='s3 cret'"},
                {"name": "d off", "code": "echo off", "enabled": False},
            ],
            schedules=[
                {"name": "weekdays", "start": START, "hours": bits(24, [6, 18]),
                 "minutes": bits(60, [0, 30]), "weekdays": bits(7, [1, 2, 3, 4, 5]),
                 "exceptions": [(date(2030, 12, 25), None), (None, time(18, 30)),
                                (date(2030, 12, 24), time(18, 0)), (None, time(6, 0, 15))]},
                {"name": "month ends", "start": START, "end": datetime(2031, 1, 1, tzinfo=UTC),
                 "enabled": False, "hours": bits(24, [23]), "minutes": bits(60, [55]),
                 "monthdays": bits(32, [32], base=1), "months": bits(12, [3, 6, 9, 12], base=1)},
                {"name": "never", "start": START, "monthdays": bits(32, [31], base=1),
                 "months": bits(12, [4], base=1)},
            ])
    got = taskplan("import", "pgagent", "--from", url, "--out", "jobs", "--job",
                   "Nightly Load!", "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    [row] = json.loads(got.stdout)
    assert row["job"] == "nightly_load" and row["file"] == "jobs/nightly_load.yaml"
    notes = " | ".join(row["not_expressed"])
    assert "password" in notes and "'never'" in notes and "06:00:15" in notes
    assert "s3 cret" not in (tmp_path / "jobs" / "nightly_load.yaml").read_text()
    spec = load_job_file(tmp_path / "jobs" / "nightly_load.yaml")
    assert spec.description == "load the mart" and spec.timezone == "Europe/Paris"
    assert not spec.enabled and spec.tags == ("Data Import",)
    assert spec.agent_labels == ("host=etl-1",)
    assert [t.name for t in spec.tasks] == ["a_sql", "b_shell", "c", "d_off"]
    assert [t.depends_on for t in spec.tasks] == [(), ("a_sql",), ("b_shell",), ("c",)]
    assert [t.enabled for t in spec.tasks] == [True, True, True, False]
    assert spec.connections == {
        dbname: f"{PG_ADMIN_URL}/{dbname}", "mart": "postgresql://etl@db.example:5433/mart"}
    on_error = spec.task("c").command
    assert isinstance(on_error, str) and on_error.startswith("DO $tp$ BEGIN EXECUTE $qtp$SELECT 2")
    weekdays, month_ends = spec.schedules
    assert weekdays.key == "weekdays" and weekdays.start == datetime(2030, 1, 1, 6, 0)
    assert weekdays.calendar is not None and weekdays.calendar.weekdays == (0, 1, 2, 3, 4)
    assert weekdays.calendar.hours == (6, 18) and weekdays.calendar.minutes == (0, 30)
    assert [(e.dates, e.at) for e in weekdays.exceptions] == [
        ((date(2030, 12, 25),), ()), ((), (time(18, 30),)),
        ((date(2030, 12, 24),), (time(18, 0),))]
    assert not month_ends.enabled and month_ends.end == datetime(2031, 1, 1, 1, 0)
    assert month_ends.calendar is not None and month_ends.calendar.monthdays == (-1,)
    assert month_ends.calendar.months == (3, 6, 9, 12)
    assert taskplan("validate", "jobs/nightly_load.yaml", cwd=tmp_path).returncode == 0
    # --apply stores it; jobs shows what was kept
    got = taskplan("import", "pgagent", "--from", url, "--out", "jobs", "--job", "nightly_load",
                   "--apply", cwd=tmp_path)
    assert got.returncode == 0 and "applied as version 1" in got.stdout, got.stdout + got.stderr
    [job] = json.loads(taskplan("jobs", "--json", cwd=tmp_path).stdout)
    assert (job["job"], job["enabled"], job["tags"], job["next"]) == (
        "nightly_load", False, ["Data Import"], None)


def test_on_error_keeps_its_meaning_when_the_job_runs(pga: tuple[str, Any],
                                                      tmp_path: Path) -> None:
    url, conn = pga
    dbname = url.rsplit("/", 1)[1]
    conn.execute("CREATE TABLE IF NOT EXISTS landed (step text)")
    add_job(conn, "tolerant", steps=[
        {"name": "1", "kind": "s", "dbname": dbname, "code": "INSERT INTO landed VALUES ('1')"},
        {"name": "2", "code": "echo two; exit 4", "onerror": "i"},
        {"name": "3", "code": "#!/bin/sh\nexit 5", "onerror": "s"},
        {"name": "4", "kind": "s", "dbname": dbname, "onerror": "i",
         "code": "INSERT INTO landed VALUES ('4'); SELECT 1/0"},
        {"name": "5", "kind": "s", "dbname": dbname,
         "code": "INSERT INTO landed VALUES ('5a'); INSERT INTO landed VALUES ('5b')"},
        {"name": "6", "code": "echo six"}])
    add_job(conn, "strict", steps=[
        {"name": "1", "kind": "s", "dbname": dbname,
         "code": "INSERT INTO landed VALUES ('s1'); SELECT 1/0"},
        {"name": "2", "kind": "s", "dbname": dbname, "code": "INSERT INTO landed VALUES ('s2')"},
    ])
    got = taskplan("import", "pgagent", "--from", url, "--out", ".", "--job", "tolerant",
                   "--job", "strict", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert taskplan("run", "tolerant.yaml", cwd=tmp_path).returncode == 0
    states = json.loads(taskplan("status", "1", "--json", cwd=tmp_path).stdout)
    assert [t["state"] for t in states["tasks"]] == ["succeeded"] * 6
    log = taskplan("logs", "1", "2", cwd=tmp_path).stdout
    assert "two" in log and "step failed (exit code 4), ignored" in log
    assert taskplan("run", "strict.yaml", cwd=tmp_path).returncode == 1
    states = json.loads(taskplan("status", "2", "--json", cwd=tmp_path).stdout)
    assert [t["state"] for t in states["tasks"]] == ["failed", "upstream_failed"]
    # pgAgent's step is one transaction: the failed ones left nothing behind
    landed = [r[0] for r in conn.execute("SELECT step FROM landed ORDER BY step").fetchall()]
    assert landed == ["1", "5a", "5b"]


def test_steps_run_one_after_another_as_pgagent_runs_them(pga: tuple[str, Any],
                                                          tmp_path: Path) -> None:
    url, conn = pga
    dbname = url.rsplit("/", 1)[1]
    conn.execute("CREATE TABLE IF NOT EXISTS chained (step text)")
    # A disabled step between a failing one and the next: the next one must not run.
    add_job(conn, "gap", steps=[
        {"name": "1", "code": "exit 3"},
        {"name": "2", "code": "echo off", "enabled": False},
        {"name": "3", "kind": "s", "dbname": dbname, "code": "INSERT INTO chained VALUES ('3')"},
    ])
    # Transaction words in a comment, a literal or a DO block: still one transaction, and the
    # on-error DO block still applies.
    add_job(conn, "words", steps=[
        {"name": "1", "kind": "s", "dbname": dbname,
         "code": "-- begin of the nightly refresh\nINSERT INTO chained VALUES ('call');"
                 " SELECT 1/0"},
        {"name": "2", "code": "echo after"}])
    add_job(conn, "do block", steps=[
        {"name": "1", "kind": "s", "dbname": dbname, "onerror": "i",
         "code": "DO $$ BEGIN INSERT INTO chained VALUES ('do'); END $$; SELECT 1/0"},
        {"name": "2", "code": "echo after"}])
    got = taskplan("import", "pgagent", "--from", url, "--out", ".", "--job", "gap",
                   "--job", "words", "--job", "do block", "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert [r["not_expressed"] for r in json.loads(got.stdout)] == [[], [], []]
    runs = [("gap", 1, ["failed", "skipped", "upstream_failed"]),
            ("words", 1, ["failed", "upstream_failed"]),
            ("do_block", 0, ["succeeded", "succeeded"])]
    for run_id, (job, code, expected) in enumerate(runs, 1):
        assert taskplan("run", f"{job}.yaml", cwd=tmp_path).returncode == code, job
        states = json.loads(taskplan("status", str(run_id), "--json", cwd=tmp_path).stdout)
        assert [t["state"] for t in states["tasks"]] == expected, job
    # each SQL step was one transaction: its failure left nothing behind
    assert conn.execute("SELECT step FROM chained").fetchall() == []


def test_a_step_connecting_with_a_uri_runs_where_pgagent_runs_it(pga: tuple[str, Any],
                                                                 tmp_path: Path) -> None:
    # pgAgent reads jstconnstr with libpq, which takes a URI as well as key=value pairs.
    url, conn = pga
    dbname = url.rsplit("/", 1)[1]
    conn.execute("CREATE TABLE IF NOT EXISTS reached (db text, app text)")
    add_job(conn, "by uri", steps=[
        {"name": "1", "kind": "s", "connstr": f"{url}?application_name=pga%20step",
         "code": "INSERT INTO reached SELECT current_database(),"
                 " current_setting('application_name')"}])
    # One libpq cannot read: pgAgent fails the step at every run; not imported, rather than
    # run somewhere else.
    add_job(conn, "unreadable", steps=[
        {"name": "1", "kind": "s", "connstr": "host=db password s3cret", "code": "SELECT 1"}])
    got = taskplan("import", "pgagent", "--from", url, "--out", ".", "--job", "by uri",
                   "--job", "unreadable", "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    by_uri, unreadable = json.loads(got.stdout)
    assert by_uri["not_expressed"] == []
    assert unreadable["file"] is None and "s3cret" not in got.stdout
    assert "cannot read the connection string" in unreadable["not_expressed"][0]
    assert taskplan("run", "by_uri.yaml", cwd=tmp_path).returncode == 0
    assert conn.execute("SELECT db, app FROM reached").fetchall() == [(dbname, "pga step")]


def test_a_step_with_several_hosts_fails_over_as_libpq_does(pga: tuple[str, Any],
                                                            tmp_path: Path) -> None:
    # A high-availability setup: libpq tries each host (and its port) in turn. Nothing listens
    # on port 1, so each step connects to the second host.
    from urllib.parse import urlsplit

    url, conn = pga
    server = urlsplit(url)
    dbname = server.path.lstrip("/")
    conn.execute("CREATE TABLE IF NOT EXISTS failed_over (how text)")
    hosts = f"127.0.0.1,{server.hostname}"
    add_job(conn, "ha", steps=[
        {"name": "1 pairs", "kind": "s", "code": "INSERT INTO failed_over VALUES ('pairs')",
         "connstr": f"host={hosts} port=1,{server.port} dbname={dbname} user={server.username}"
                    " target_session_attrs=any"},
        {"name": "2 uri", "kind": "s", "code": "INSERT INTO failed_over VALUES ('uri')",
         "connstr": f"postgresql://{server.username}@127.0.0.1:1,{server.hostname}:"
                    f"{server.port}/{dbname}"}])
    got = taskplan("import", "pgagent", "--from", url, "--out", ".", "--job", "ha", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert taskplan("validate", "ha.yaml", cwd=tmp_path).returncode == 0
    ran = taskplan("run", "ha.yaml", cwd=tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert sorted(conn.execute("SELECT how FROM failed_over").fetchall()) == [
        ("pairs",), ("uri",)]


def test_a_tolerant_step_postgresql_refuses_in_a_function_still_runs(
        pga: tuple[str, Any], tmp_path: Path) -> None:
    # pgAgent runs a one-statement step as is; inside the DO block that makes on-error work
    # REINDEX SCHEMA fails ("cannot be executed from a function"), so each run would do nothing.
    url, conn = pga
    dbname = url.rsplit("/", 1)[1]
    add_job(conn, "reindex", steps=[
        {"name": "1", "kind": "s", "dbname": dbname, "onerror": "i",
         "code": "REINDEX (VERBOSE) SCHEMA public"}])
    got = taskplan("import", "pgagent", "--from", url, "--out", ".", "--job", "reindex",
                   "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    [row] = json.loads(got.stdout)
    assert "REINDEX SCHEMA cannot run inside a DO block" in row["not_expressed"][0]
    assert taskplan("run", "reindex.yaml", cwd=tmp_path).returncode == 0
    log = taskplan("logs", "1", "1", cwd=tmp_path).stdout
    assert "step failed" not in log and "was reindexed" in log


def test_values_python_cannot_hold_are_read_as_pgagent_reads_them(pga: tuple[str, Any],
                                                                   tmp_path: Path) -> None:
    # One row with an infinite end, a 24:00 exception or a year past 9999 made the whole
    # catalog unreadable ("timestamp too large"), so no job at all could be imported.
    url, conn = pga
    daily = {"hours": bits(24, [6]), "minutes": bits(60, [0])}
    add_job(conn, "open ended", steps=[{"name": "a", "code": "true"}], schedules=[
        {"name": "no end", "start": START, "end": "infinity", **daily},
        {"name": "far end", "start": START, "end": "12000-01-01 00:00+00", **daily},
        {"name": "no start", "start": "-infinity", **daily},
        {"name": "ends before", "start": START, "end": "-infinity", **daily}])
    add_job(conn, "odd exceptions", steps=[{"name": "a", "code": "true"}], schedules=[
        {"name": "s", "start": START, **daily,
         "exceptions": [(None, "24:00"), ("infinity", None), ("20000-01-01", None),
                        (date(2030, 12, 25), None)]}])
    got = taskplan("import", "pgagent", "--from", url, "--out", ".", "--job", "open ended",
                   "--job", "odd exceptions", "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    open_ended, odd = json.loads(got.stdout)
    notes = " | ".join(open_ended["not_expressed"])
    assert "'ends before'" in notes, notes
    spec = load_job_file(tmp_path / open_ended["file"])
    assert [(s.name, s.start, s.end) for s in spec.schedules] == [
        ("no end", datetime(2030, 1, 1, 6, 0), None),
        ("far end", datetime(2030, 1, 1, 6, 0), None),
        ("no start", None, None)]
    notes = " | ".join(odd["not_expressed"])
    assert "24:00" in notes and "infinity" in notes and "20000-01-01" in notes, notes
    [s] = load_job_file(tmp_path / odd["file"]).schedules
    assert [(e.dates, e.at) for e in s.exceptions] == [((date(2030, 12, 25),), ())]


def test_a_server_writing_dates_its_own_way_is_read(pga: tuple[str, Any],
                                                    tmp_path: Path) -> None:
    # A database set to DateStyle German (01.01.2030) or Postgres (Tue Jan 01 2030) made
    # the import fail ("can't parse timestamptz with DateStyle ...").
    url, conn = pga
    add_job(conn, "styled", steps=[{"name": "a", "code": "true"}], schedules=[
        {"name": "s", "start": START, "end": datetime(2031, 1, 1, tzinfo=UTC),
         "exceptions": [(date(2030, 12, 25), time(6, 0))]}])
    for style in ("German", "Postgres", "SQL"):
        got = taskplan("import", "pgagent", "--from", f"{url}?options=-c%20DateStyle%3D{style}",
                       "--out", style[:3], "--job", "styled", "--json", cwd=tmp_path)
        assert got.returncode == 0, got.stderr
        [row] = json.loads(got.stdout)
        [s] = load_job_file(tmp_path / row["file"]).schedules
        assert (s.start, s.end) == (datetime(2030, 1, 1, 6, 0), datetime(2031, 1, 1, 1, 0))
        assert [(e.dates, e.at) for e in s.exceptions] == [((date(2030, 12, 25),), (time(6, 0),))]


def test_long_names_are_cut_to_what_the_store_keeps(pga: tuple[str, Any],
                                                    tmp_path: Path) -> None:
    # pgAgent's names are text of any length; taskplan's store keeps 200 characters.
    url, conn = pga
    long = "quarterly consolidation of the regional ledgers " * 6
    for n in (1, 2):
        add_job(conn, f"{long}{n}",
                steps=[{"name": f"{long}step {n}", "code": "true"},
                       {"name": f"{long}step {n + 2}", "code": "true"}],
                schedules=[{"name": f"{long}schedule", "start": START},
                           {"name": f"{long}schedule", "start": START}])
    got = taskplan("import", "pgagent", "--from", url, "--out", ".", "--job", f"{long}1",
                   "--job", f"{long}2", "--json", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    rows = json.loads(got.stdout)
    assert [r["not_expressed"] for r in rows] == [[], []]
    specs = [load_job_file(tmp_path / r["file"]) for r in rows]
    names = [s.name for s in specs]
    assert len(set(names)) == 2 and all(len(n) <= 200 for n in names)
    for spec in specs:
        assert len({t.name for t in spec.tasks}) == 2
        assert all(len(t.name) <= 200 for t in spec.tasks)
        assert len({s.name for s in spec.schedules}) == 2
        assert all(s.name is not None and len(s.name) <= 200 for s in spec.schedules)


def test_bad_inputs_exit_2_with_one_line(pga: tuple[str, Any], tmp_path: Path) -> None:
    url, _ = pga
    unreachable = taskplan("import", "pgagent", "--from",
                           "postgresql://nobody:secret@127.0.0.1:1/x", cwd=tmp_path)
    assert unreachable.returncode == 2
    assert len(unreachable.stderr.strip().splitlines()) == 1
    assert "cannot connect" in unreachable.stderr and "secret" not in unreachable.stderr
    # a libpq key=value string, which --from takes too
    for conninfo in ("host=127.0.0.1 port=1 user=nobody password=secret dbname=x",
                     "host=127.0.0.1 port=1 password = 'sec ret\\'s' dbname=x"):
        unreachable = taskplan("import", "pgagent", "--from", conninfo, cwd=tmp_path)
        assert unreachable.returncode == 2 and "cannot connect" in unreachable.stderr
        assert "password=***" in unreachable.stderr.replace(" = ", "=")
        assert "secret" not in unreachable.stderr and "sec ret" not in unreachable.stderr
    empty = taskplan("import", "pgagent", "--from", f"{PG_ADMIN_URL}/postgres", cwd=tmp_path)
    assert empty.returncode == 2 and "no pgAgent catalog" in empty.stderr
    unknown = taskplan("import", "pgagent", "--from", url, "--job", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and "no pgAgent job 'nope'" in unknown.stderr
    # of a big catalog, the first names only
    _, conn = pga
    for n in range(12):
        add_job(conn, f"listed {n}", steps=[{"name": "a", "code": "true"}])
    unknown = taskplan("import", "pgagent", "--from", url, "--job", "nope", cwd=tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.count("'") == 2 + 2 * 10
    assert unknown.stderr.rstrip().endswith(" more)")
    zone = taskplan("import", "pgagent", "--from", url, "--timezone", "Mars/Base", cwd=tmp_path)
    assert zone.returncode == 2 and "Mars/Base" in zone.stderr
    missing = taskplan("import", "crontab", "nope.cron", cwd=tmp_path)
    assert missing.returncode == 2 and "nope.cron" in missing.stderr
    assert not list(tmp_path.glob("*.yaml"))
