"""The pure half of `taskplan import pgagent`: catalog rows -> job documents."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from taskplan.importers.documents import check
from taskplan.importers.pgagent import calendar_fields, convert, parse_conninfo
from taskplan.store.pgagent_catalog import Catalog, PgJob, PgSchedule, PgStep


def _bits(size: int, *on: int) -> tuple[bool, ...]:
    return tuple(i in on for i in range(size))


def _schedule(**arrays: tuple[bool, ...]) -> PgSchedule:
    base = {"minutes": _bits(60), "hours": _bits(24), "weekdays": _bits(7),
            "monthdays": _bits(32), "months": _bits(12)}
    return PgSchedule(id=1, name="s", description="", enabled=True,
                      start=datetime(2030, 1, 1, tzinfo=UTC), end=None, **{**base, **arrays})


def test_arrays_map_to_calendar_keys() -> None:
    # nothing set: every minute of every day
    assert calendar_fields(_schedule()) == {"minutes": list(range(60))}
    # hours without minutes: every minute of those hours; Sunday-first weekdays; "last day"
    assert calendar_fields(_schedule(
        hours=_bits(24, 0, 23), weekdays=_bits(7, 0, 6), monthdays=_bits(32, 0, 31),
        months=_bits(12, 1))) == {
        "hours": [0, 23], "minutes": list(range(60)), "weekdays": ["sat", "sun"],
        "monthdays": [1, "last"], "months": ["feb"]}
    # everything set is the same as nothing set
    assert calendar_fields(_schedule(minutes=_bits(60, 5), hours=_bits(24, *range(24)),
                                     weekdays=_bits(7, *range(7)))) == {"minutes": [5]}


def test_connection_strings_and_jstdbname() -> None:
    assert parse_conninfo("host=a port=5 dbname='my db' password='it\\'s' x=y") == {
        "host": "a", "port": "5", "dbname": "my db", "password": "it's", "x": "y"}
    steps = (
        PgStep(1, "a", "", True, "s", "SELECT 1", "", "sales", "f"),
        PgStep(2, "b", "", True, "s", "SELECT 2", "", "sales", "f"),
        PgStep(3, "c", "", True, "s", "SELECT 3",
               "host=/var/run/postgresql dbname=ops user=etl sslmode=disable", "", "f"),
    )
    catalog = Catalog("UTC", "db1", 5432, "agent", (PgJob(7, "J", "", "", "", True, steps),))
    [item] = convert(catalog, "UTC")
    assert item.document is not None
    assert item.document["connections"] == {
        "sales": "postgresql://agent@db1:5432/sales",
        "ops": "postgresql://etl@/ops?host=/var/run/postgresql&port=5432&sslmode=disable"}
    assert [t.get("connection") for t in item.document["tasks"].values()] == [
        "sales", "sales", "ops"]


def test_connection_strings_are_read_as_libpq_reads_them() -> None:
    # pgAgent hands jstconnstr to libpq (PQconninfoParse): key=value pairs or a URI.
    pytest.importorskip("psycopg")
    from psycopg.conninfo import conninfo_to_dict

    for text in ("host=a port=5 dbname='my db' password='it\\'s'",
                 "postgresql://etl:p%40ss@db.example:5433/mart?application_name=a%20b",
                 "postgres://db.example/mart", "postgresql:///ops?host=/var/run/postgresql",
                 "postgresql://[::1]:6000/x?ssl=true", "postgresql://", "postgresql://u@h"):
        assert parse_conninfo(text) == conninfo_to_dict(text), text
    for text in ("postgresql://h/db?x", "postgresql://h/%zz", "host=a password s3cret",
                 "dbname='unterminated"):
        with pytest.raises(ValueError) as caught:
            parse_conninfo(text)
        assert "s3cret" not in str(caught.value)


def test_a_job_without_steps_is_reported_not_written() -> None:
    catalog = Catalog("UTC", "h", 5432, "u", (PgJob(1, "Empty", "", "", "", True),))
    [item] = convert(catalog, "UTC")
    assert item.document is None and "no steps" in item.notes[0]


def _job(*steps: PgStep, port: int = 5432) -> Catalog:
    return Catalog("UTC", "db1", port, "agent", (PgJob(7, "J", "", "", "", True, steps),))


def _step(i: int, code: str, *, enabled: bool = True, kind: str = "s", on_error: str = "f",
          connstr: str = "", name: str | None = None) -> PgStep:
    return PgStep(i, name or f"s{i}", "", enabled, kind, code, connstr,
                  "" if connstr else "sales", on_error)


def test_a_disabled_step_is_left_out_of_the_chain() -> None:
    # pgAgent runs the enabled steps one after another: a disabled one neither waits nor is
    # waited for, so a failure before it still stops the steps after it.
    [item] = convert(_job(_step(1, "x", enabled=False, kind="b"), _step(2, "a", kind="b"),
                          _step(3, "b", enabled=False, kind="b"),
                          _step(4, "c", enabled=False, kind="b"), _step(5, "d", kind="b")),
                     "UTC")
    assert item.document is not None
    tasks = item.document["tasks"]
    assert {name: (t.get("depends_on"), t.get("enabled", True)) for name, t in tasks.items()} == {
        "s1": (None, False), "s2": (None, True), "s3": (["s2"], False), "s4": (["s2"], False),
        "s5": (["s2"], True)}


def _sql_of(code: str, on_error: str = "f") -> tuple[str, list[str]]:
    [item] = convert(_job(_step(1, code, on_error=on_error)), "UTC")
    assert item.document is not None
    return item.document["tasks"]["s1"]["sql"], item.notes


def test_only_the_steps_own_statements_decide_its_transaction() -> None:
    # Words in comments, literals and dollar-quoted bodies are not statements of the step.
    for code in ["-- begin of the nightly refresh\nINSERT INTO t VALUES (1); SELECT 1",
                 "SELECT 'call'; SELECT 'commit' /* vacuum */",
                 "DO $$ BEGIN PERFORM 1; END $$; SELECT 2",
                 "CREATE FUNCTION f() RETURNS int AS $$ BEGIN RETURN 1; END $$ LANGUAGE plpgsql;"
                 " SELECT f()",
                 'CREATE TABLE "begin" (x int); CREATE TABLE concurrently_log (x int)',
                 "REFRESH MATERIALIZED VIEW CONCURRENTLY mv; CHECKPOINT; ANALYZE t"]:
        sql, notes = _sql_of(code)
        assert (sql, notes) == (f"BEGIN;\n{code}\n;\nCOMMIT;", []), code
        sql, notes = _sql_of(code, "i")
        assert sql.startswith("DO $tp$ BEGIN EXECUTE") and notes == [], code


def test_a_step_that_cannot_be_one_transaction_says_so() -> None:
    for code, words in [("BEGIN; INSERT INTO t VALUES (1); COMMIT;", "BEGIN"),
                        ("INSERT INTO t VALUES (1); -- done\nend", "END"),
                        ("DELETE FROM t; /* then */ VACUUM (ANALYZE) t", "VACUUM"),
                        ("SELECT 1; CALL refresh()", "CALL"),
                        ("SELECT 1; CLUSTER VERBOSE", "CLUSTER"),
                        ("SELECT 1; create unique index\nconcurrently i on t (x)",
                         "CREATE ... CONCURRENTLY")]:
        sql, notes = _sql_of(code)
        assert sql == code, code
        [note] = notes
        if words in ("VACUUM", "CLUSTER", "CREATE ... CONCURRENTLY"):
            # refused in pgAgent's one query string too: the step never ran there
            assert f"PostgreSQL refuses its {words}" in note, note
            assert "failed at every pgAgent run" in note and "committing on its own" in note
        else:
            assert f"its {words} cannot run inside BEGIN ... COMMIT" in note, note
            assert "commits on its own" in note
        sql, notes = _sql_of(code, "s")
        assert sql == code and f"its {words} cannot run inside a DO block" in notes[-1], code
    # one statement is one transaction anyway: nothing to wrap, nothing to report
    assert _sql_of("VACUUM t") == ("VACUUM t", [])


def test_connection_strings_get_libpqs_defaults(tmp_path: Path) -> None:
    [item] = convert(_job(
        _step(1, "SELECT 1", connstr="host=other.example dbname=x"),
        _step(2, "SELECT 1", connstr="hostaddr=10.0.0.5 dbname=x user=u"),
        _step(3, "SELECT 1", connstr="dbname=local"),
        _step(4, "SELECT 1", connstr="service=prod"),
        _step(5, "SELECT 1", connstr="service=prod dbname=other user=ro"),
        _step(6, "SELECT 1", connstr="host=a,b port=5433,5434 dbname=ha"),
        _step(7, "SELECT 1", connstr="host=a,b dbname=ha2"),
        port=6543), "UTC")
    assert item.document is not None
    # a named server without a port: libpq's 5432, not the catalog's 6543; no server named:
    # the catalog's; a service: only what the string says, the rest from pg_service.conf
    assert item.document["connections"] == {
        "x": "postgresql://agent@other.example:5432/x",
        "x_2": "postgresql://u@/x?hostaddr=10.0.0.5&port=5432",
        "local": "postgresql://agent@db1:6543/local",
        "prod": "postgresql:///?service=prod",
        "other": "postgresql://ro@/other?service=prod",
        # several hosts (libpq tries each in turn): listed in the query, as the URL reader of
        # sql tasks takes them
        "ha": "postgresql://agent@/ha?host=a,b&port=5433,5434",
        "ha2": "postgresql://agent@/ha2?host=a,b&port=5432"}
    assert check(item, tmp_path) is not None, item.notes
    assert not item.notes


def test_a_host_no_agent_can_have_leaves_the_job_disabled(tmp_path: Path) -> None:
    # pgAgent runs a job only on the host it names: a name no host has never ran it.
    step = _step(1, "echo hi", kind="b")
    jobs = (PgJob(1, "pinned", "", "", "db-1.example", True, (step,)),
            PgJob(2, "nowhere", "", "", "db 1", True, (step,)))
    pinned, nowhere = convert(Catalog("UTC", "h", 5432, "u", jobs), "UTC")
    assert pinned.document is not None and nowhere.document is not None
    assert pinned.document["agent_labels"] == ["host=db-1.example"]
    assert "enabled" not in pinned.document and pinned.notes == []
    assert nowhere.document["enabled"] is False and "agent_labels" not in nowhere.document
    assert "no pgAgent ran the job on its schedules" in nowhere.notes[0]
    assert check(nowhere, tmp_path) is not None


def test_steps_without_code_do_what_pgagent_does_with_them(tmp_path: Path) -> None:
    # an empty script runs and succeeds; an empty query fails the step
    [item] = convert(_job(_step(1, "", kind="b"), _step(2, " \n", kind="b"),
                          _step(3, "-- nothing", on_error="i"), _step(4, "SELECT 1")), "UTC")
    assert item.document is not None and check(item, tmp_path) is not None
    tasks = item.document["tasks"]
    assert tasks["s1"]["shell"] == tasks["s2"]["shell"] == "true"
    assert "EXCEPTION WHEN OTHERS" in tasks["s3"]["sql"]
    assert [n.split(":")[0] for n in item.notes] == [
        "step 's1' has no code", "step 's2' has no code"]
    [item] = convert(_job(_step(1, "SELECT 1"), _step(2, "  -- nothing\n;")), "UTC")
    assert item.document is None
    assert "step 's2' has no SQL statement, which pgAgent fails at every run" in item.notes[0]


def test_steps_on_the_server_of_from_say_its_password_is_not_written() -> None:
    # --from gave a password: a jstdbname step connects as its user without it.
    steps = (PgStep(1, "a", "", True, "s", "SELECT 1", "", "sales", "f"),
             PgStep(2, "b", "", True, "s", "SELECT 2", "", "ops", "f"),
             PgStep(3, "c", "", True, "s", "SELECT 3", "host=other dbname=x user=u", "", "f"))
    job = PgJob(7, "J", "", "", "", True, steps)
    [item] = convert(Catalog("UTC", "db1", 5432, "agent", (job,), password=True), "UTC")
    said = [n for n in item.notes if "--from" in n]
    assert said == ["steps 'a', 'b' connect to the server of --from as agent without the"
                    " password --from gave (not written to the job file: give the agents"
                    " PGPASSWORD or a ~/.pgpass)"]
    [item] = convert(Catalog("UTC", "db1", 5432, "agent", (job,)), "UTC")
    assert not item.notes
