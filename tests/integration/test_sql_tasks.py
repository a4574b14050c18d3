"""sql tasks through the real engine and agent, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from engine_helpers import log_text, run_agent, run_job, start_run, tasks, wait_for
from sql_targets import Target

from taskplan.engine import Engine
from taskplan.store.db import Store

HOSTILE = "x'; DROP TABLE t; --"


def job(tasks: dict[str, Any], **extra: Any) -> str:
    """A job file as JSON (valid YAML 1.2): no quoting puzzles around SQL text."""
    return json.dumps({"job": "sqljob", "connections": {"db": "${TP_TARGET_URL}"},
                       "defaults": {"connection": "db"}, **extra, "tasks": tasks})


def test_statement_rowcount_rows_and_script(engine: Engine, store: Store, target: Target
                                            ) -> None:
    t = target.name("items")
    q = target.quote(t)
    script = (f"CREATE TABLE {q} (id INT, label VARCHAR(40));"
              f" INSERT INTO {q} VALUES (1, 'a;b'), (2, 'it''s; here'); -- c; d\n"
              f" /* e; */ SELECT id, label FROM {q} ORDER BY id")
    run_id, _ = run_job(engine, job({"s": {"sql": script}}))
    t_s = tasks(store, run_id)["s"]
    assert t_s["state"] == "succeeded", t_s["error"]
    text = log_text(store, t_s["id"])
    assert "statement 3 of 3" in text
    assert "rowcount: 2" in text
    assert "1 | a;b" in text and "2 | it's; here" in text
    assert t_s["result"]["rows"] == [{"id": 1, "label": "a;b"}, {"id": 2, "label": "it's; here"}]


def test_only_100_rows_reach_the_log(engine: Engine, store: Store, target: Target) -> None:
    if target.kind == "mysql":
        sql = "SELECT seq AS n FROM seq_1_to_250"
    elif target.kind == "postgresql":
        sql = "SELECT generate_series(1, 250) AS n"
    else:
        sql = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 250)"
               " SELECT n FROM c")
    run_id, _ = run_job(engine, job({"s": {"sql": sql}}))
    t_s = tasks(store, run_id)["s"]
    assert t_s["state"] == "succeeded", t_s["error"]
    text = log_text(store, t_s["id"])
    assert "only the first 100 rows" in text
    assert "\n100\n" in text and "\n101\n" not in text
    assert len(t_s["result"]["rows"]) == 100


def test_hostile_value_arrives_literally_in_binds(engine: Engine, store: Store, target: Target
                                                  ) -> None:
    t = target.name("victim")
    q = target.quote(t)
    target.run(f"CREATE TABLE {q} (v VARCHAR(100))")
    run_id, _ = run_job(engine, job({"ins": {"sql": f"INSERT INTO {q} (v) VALUES (:day)"}}),
                        params={"day": HOSTILE})
    assert tasks(store, run_id)["ins"]["state"] == "succeeded"
    assert target.run(f"SELECT v FROM {q}") == [(HOSTILE,)]


def test_ident_filter_quotes_for_the_dialect(engine: Engine, store: Store, target: Target
                                             ) -> None:
    weird = target.name('odd "name`') if target.kind != "mysql" else target.name("odd name`x")
    sql = ("CREATE TABLE {{ params.table | ident }} (x INT);"
           " INSERT INTO {{ params.table | ident }} VALUES (1)")
    run_id, _ = run_job(engine, job({"mk": {"sql": sql}}), params={"table": weird})
    t_mk = tasks(store, run_id)["mk"]
    assert t_mk["state"] == "succeeded", t_mk["error"]
    quoted = ("`" + weird.replace("`", "``") + "`" if target.kind == "mysql"
              else '"' + weird.replace('"', '""') + '"')
    assert target.run(f"SELECT x FROM {quoted}") == [(1,)]
    if target.kind != "sqlite":
        target.run(f"DROP TABLE {quoted}")


def test_call_procedure_with_binds_and_server_messages(engine: Engine, store: Store,
                                                       target: Target) -> None:
    if target.kind == "sqlite":
        pytest.skip("SQLite has no stored procedures")
    t, proc = target.name("calls"), target.name("proc")
    target.run(f"CREATE TABLE {t} (v VARCHAR(100))")
    if target.kind == "postgresql":
        target.run(f"CREATE PROCEDURE {proc}(v text) LANGUAGE plpgsql AS $$ BEGIN"
                   f" INSERT INTO {t} VALUES (v); RAISE NOTICE 'stored %', v; END $$")
        warn = "SELECT 1"
    else:
        target.run(f"CREATE PROCEDURE {proc}(IN v VARCHAR(100)) INSERT INTO {t} VALUES (v)")
        warn = "SELECT 1/0"
    run_id, _ = run_job(engine, job({"c": {"sql": f"CALL {proc}(:day); {warn}"}}),
                        params={"day": HOSTILE})
    t_c = tasks(store, run_id)["c"]
    assert t_c["state"] == "succeeded", t_c["error"]
    assert target.run(f"SELECT v FROM {t}") == [(HOSTILE,)]
    text = log_text(store, t_c["id"])
    if target.kind == "postgresql":
        assert f"NOTICE: stored {HOSTILE}" in text
    else:
        assert "Warning 1365: Division by 0" in text


def test_a_routine_with_a_compound_body_is_created_by_a_script(engine: Engine, store: Store,
                                                              target: Target) -> None:
    """A MariaDB procedure's BEGIN ... END, a PostgreSQL BEGIN ATOMIC body and a SQLite trigger
    hold `;` of their own: the script sends each definition whole, then the statements after."""
    t, r = target.quote(target.name("facts")), target.quote(target.name("addfact"))
    if target.kind == "mysql":
        routine = (f"CREATE PROCEDURE {r}(k INT) BEGIN DECLARE i INT DEFAULT 0;"
                   f" WHILE i < k DO INSERT INTO {t} VALUES (CASE WHEN i = 0 THEN 'first;'"
                   f" ELSE 'next' END); SET i = i + 1; END WHILE; END;"
                   f" CALL {r}(3)")
    elif target.kind == "postgresql":
        routine = (f"CREATE PROCEDURE {r}(k int) LANGUAGE SQL BEGIN ATOMIC"
                   f" INSERT INTO {t} VALUES ('first;'); INSERT INTO {t}"
                   f" SELECT 'next' FROM generate_series(2, k); END; CALL {r}(3)")
    else:
        routine = (f"CREATE TABLE {r} (k INT); CREATE TRIGGER {target.name('trg')} AFTER"
                   f" INSERT ON {r} BEGIN INSERT INTO {t} VALUES ('first;');"
                   f" INSERT INTO {t} VALUES ('next'); INSERT INTO {t} VALUES ('next'); END;"
                   f" INSERT INTO {r} VALUES (3)")
    script = f"CREATE TABLE {t} (v VARCHAR(20)); {routine}"
    run_id, _ = run_job(engine, job({"s": {"sql": script}}))
    t_s = tasks(store, run_id)["s"]
    assert t_s["state"] == "succeeded", t_s["error"]
    statements = 4 if target.kind == "sqlite" else 3
    assert f"statement {statements} of {statements}" in log_text(store, t_s["id"])
    assert sorted(v for (v,) in target.run(f"SELECT v FROM {t}")) == ["first;", "next", "next"]


def test_a_delimiter_line_is_refused_before_anything_runs(engine: Engine, store: Store,
                                                          target: Target) -> None:
    if target.kind != "mysql":
        pytest.skip("DELIMITER is the mysql client's")
    t = target.quote(target.name("never"))
    # (a comment before the line, as in a dump, hid it: the server met it after the table)
    for comment in ("", "-- the procedure\n", "# the procedure\n/* p */ "):
        script = (f"CREATE TABLE {t} (v INT);\n{comment}DELIMITER //\nCREATE PROCEDURE p()"
                  " BEGIN SELECT 1; END //\nDELIMITER ;")
        run_id, _ = run_job(engine, job({"s": {"sql": script}}))
        t_s = tasks(store, run_id)["s"]
        assert t_s["state"] == "failed"
        assert t_s["error"].startswith("statement 2 of 3: DELIMITER is a mysql client command"
                                       ), (comment, t_s["error"])
        assert target.run(f"SHOW TABLES LIKE '{target.name('never')}'") == []


def test_sql_error_fails_the_task_with_the_server_reason(engine: Engine, store: Store,
                                                         target: Target) -> None:
    run_id, _ = run_job(engine, job({"bad": {"sql": "SELECT 1; SELECT * FROM no_such_table_here"}}))
    t_bad = tasks(store, run_id)["bad"]
    assert t_bad["state"] == "failed"
    assert t_bad["error"].startswith("statement 2 of 2: ")
    assert "no_such_table_here" in t_bad["error"]


def test_missing_environment_variable_is_a_clear_failure(engine: Engine, store: Store,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.delenv("TP_NOT_SET_ANYWHERE", raising=False)
    run_id, _ = run_job(engine, """
        job: noenv
        connections: {db: "${TP_NOT_SET_ANYWHERE}"}
        tasks:
          s: {sql: "SELECT 1", connection: db}
        """)
    t_s = tasks(store, run_id)["s"]
    assert t_s["state"] == "failed"
    assert t_s["error"] == ("connection 'db': environment variable TP_NOT_SET_ANYWHERE"
                            " is not set")


def test_password_never_appears(engine: Engine, store: Store,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    for url in ("postgresql://bob:s3cr3tpw@127.0.0.1:1/x", "mysql://bob:s3cr3tpw@127.0.0.1:1/x"):
        monkeypatch.setenv("TP_SECRET_URL", url)
        run_id, _ = run_job(engine, """
            job: secret
            connections: {db: "${TP_SECRET_URL}"}
            tasks:
              s: {sql: "SELECT 1", connection: db}
            """)
        t_s = tasks(store, run_id)["s"]
        assert t_s["state"] == "failed"
        assert "s3cr3tpw" not in t_s["error"] and "***" in t_s["error"]
        assert "s3cr3tpw" not in log_text(store, t_s["id"])


def test_timeout_cancels_the_statement_on_the_server(engine: Engine, store: Store,
                                                     target: Target) -> None:
    marker = target.name("sleeper")
    slow = {"sql": target.sleep_sql(30, marker), "timeout": "1s"}
    run_id, _ = run_job(engine, job({"slow": slow}))
    t_slow = tasks(store, run_id)["slow"]
    assert t_slow["state"] == "failed"
    assert t_slow["error"] == "timed out after 1s"
    assert t_slow["finished_at"] - t_slow["started_at"] < 5
    wait_for(lambda: target.running_with(marker) == 0, 5, "the statement to leave the server")


def test_cancel_cancels_the_statement_on_the_server(engine: Engine, store: Store,
                                                    target: Target) -> None:
    marker = target.name("cancelme")
    run_id = start_run(engine, job({"slow": {"sql": target.sleep_sql(30, marker)}}))
    done = threading.Event()

    def watch() -> None:
        wait_for(lambda: tasks(store, run_id)["slow"]["state"] == "running", 10, "start")
        if target.kind != "sqlite":
            wait_for(lambda: target.running_with(marker) == 1, 10, "the statement to start")
        engine.cancel_run(run_id)
        done.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    run_agent(engine, run_id, timeout=20, until=lambda a: done.is_set() and a.busy == 0)
    thread.join()
    assert engine.run_state(run_id) == "cancelled"
    assert tasks(store, run_id)["slow"]["state"] == "cancelled"
    wait_for(lambda: target.running_with(marker) == 0, 5, "the statement to leave the server")


def test_a_cast_right_after_a_bind(engine: Engine, store: Store, target: Target) -> None:
    if target.kind == "postgresql":
        sql = "SELECT :day::date + 1 AS next_day, CAST(:n AS int)::text AS n, '1::2' AS s"
        want = {"next_day": "2026-03-02", "n": "7", "s": "1::2"}
    else:  # no `::` operator here: binds and literals with colons are unchanged
        sql = "SELECT :day AS next_day, :n AS n, '1::2' AS s"
        want = {"next_day": "2026-03-01", "n": "7", "s": "1::2"}
    run_id, _ = run_job(engine, job({"s": {"sql": sql}}), params={"day": "2026-03-01", "n": "7"})
    got = tasks(store, run_id)["s"]
    assert got["state"] == "succeeded", got["error"]
    assert got["result"]["rows"] == [want]



def test_pooled_connections_the_server_closed_are_replaced(engine: Engine, store: Store,
                                                            target: Target) -> None:
    """Pooled connections are pinged before use, and one the server closed is replaced. Every
    one taken from the pool is pinged, the replacement included: after a server restart (here,
    each session ended) the first was replaced by the next pooled one, unchecked, and the task
    failed 'server closed the connection unexpectedly'."""
    if target.kind == "sqlite":
        pytest.skip("SQLite has no server to close a connection")
    if target.kind == "postgresql":
        pid = "SELECT pg_backend_pid() AS pid"
        slow = "SELECT pg_backend_pid() AS pid FROM pg_sleep(1)"
        kill, alive = ("SELECT pg_terminate_backend(:p)",
                       "SELECT pid FROM pg_stat_activity WHERE pid = :p")
    else:
        pid, slow = "SELECT CONNECTION_ID() AS pid", "SELECT CONNECTION_ID() AS pid, SLEEP(1) AS s"
        kill, alive = "KILL :p", "SELECT id FROM information_schema.processlist WHERE id = :p"

    def run(tasks_: dict[str, Any]) -> list[int]:
        run_id, _ = run_job(engine, job(tasks_))
        got = tasks(store, run_id)
        assert all(t["state"] == "succeeded" for t in got.values()), got
        return [int(got[name]["result"]["rows"][0]["pid"]) for name in sorted(tasks_)]

    def end(sessions: list[int]) -> None:
        for p in sessions:
            target.run(kill, {"p": p})
            # (the server ends it after answering: a ping before that would still be answered)
            wait_for(lambda p=p: not target.run(alive, {"p": p}), 10, "the session to end")

    both = run({"a": {"sql": slow}, "b": {"sql": slow}})  # two sessions at once, both pooled
    assert len(set(both)) == 2, both
    end(both)
    for _ in range(2):
        [one] = run({"s": {"sql": pid}})
        assert one not in both
        end([one])


def test_a_procedure_failing_after_a_result_set_fails_the_task(engine: Engine, store: Store,
                                                              target: Target) -> None:
    """A MariaDB procedure sends one result set per SELECT, then its error: the error came
    after the task had read the first set, and was dropped (the task succeeded, its
    dependants ran, and a traceback went to stderr). Every result set is read and logged."""
    if target.kind != "mysql":
        pytest.skip("only MariaDB/MySQL procedures return result sets")
    t, proc = target.quote(target.name("seen")), target.quote(target.name("fails"))
    target.run(f"CREATE TABLE {t} (x INT)")
    target.run(f"CREATE PROCEDURE {proc}() BEGIN SELECT 1 AS first;"
               f" SELECT x FROM {t}; SELECT 'third' AS s;"
               " SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'boom in proc'; END")
    ok_proc = target.quote(target.name("fine"))
    target.run(f"CREATE PROCEDURE {ok_proc}() BEGIN SELECT 1 AS first; SELECT 'two' AS s; END")
    try:
        run_id, _ = run_job(engine, job({"c": {"sql": f"CALL {proc}()"},
                                         "after": {"depends_on": ["c"], "sql": "SELECT 1"},
                                         "ok": {"sql": f"CALL {ok_proc}()"}}))
        got = tasks(store, run_id)
        assert got["c"]["state"] == "failed"
        assert "boom in proc" in got["c"]["error"]
        assert got["after"]["state"] == "upstream_failed"
        text = log_text(store, got["c"]["id"])
        assert "first\n1\n" in text and "s\nthird\n" in text
        assert got["ok"]["state"] == "succeeded", got["ok"]["error"]
        assert "s\ntwo\n" in log_text(store, got["ok"]["id"])
        assert got["ok"]["result"]["rows"] == [{"first": 1}]
    finally:
        target.run(f"DROP PROCEDURE IF EXISTS {proc}")
        target.run(f"DROP PROCEDURE IF EXISTS {ok_proc}")


def test_a_warning_is_logged_by_its_own_statement_only(engine: Engine, store: Store,
                                                      target: Target) -> None:
    """MariaDB keeps a statement's warnings until a statement that uses a table: a later
    task on the same pooled connection showed another task's `Note 1051` as its own."""
    if target.kind != "mysql":
        pytest.skip("MariaDB/MySQL warnings")
    gone = target.quote(target.name("never_made"))
    run_id, _ = run_job(engine, job({"a": {"sql": f"DROP TABLE IF EXISTS {gone}"},
                                     "b": {"depends_on": ["a"], "sql": "SELECT 1 AS one"},
                                     "c": {"depends_on": ["b"], "sql": "SELECT 1/0 AS z"}}),
                        slots=1)
    got = tasks(store, run_id)
    assert "Note 1051" in log_text(store, got["a"]["id"])
    assert "Note 1051" not in log_text(store, got["b"]["id"])
    text = log_text(store, got["c"]["id"])
    assert "Warning 1365: Division by 0" in text and "Note 1051" not in text


def test_a_script_that_leaves_its_transaction_open_fails(engine: Engine, store: Store,
                                                        target: Target) -> None:
    """`BEGIN; INSERT ...;` without COMMIT: the task succeeded and its connection's return to
    the pool rolled the insert back, silently. It fails, saying so, and nothing is kept."""
    t = target.quote(target.name("open_tx"))
    target.run(f"CREATE TABLE {t} (x INT)")
    begin = "START TRANSACTION" if target.kind == "mysql" else "BEGIN"
    run_id, _ = run_job(engine, job({
        "open": {"sql": f"{begin}; INSERT INTO {t} VALUES (1)"},
        "closed": {"depends_on": ["open"], "trigger": "all_done",
                   "sql": f"{begin}; INSERT INTO {t} VALUES (2); COMMIT"}}), slots=1)
    got = tasks(store, run_id)
    assert got["open"]["state"] == "failed"
    assert got["open"]["error"] == (
        "the script ended inside a transaction it opened (no COMMIT after its BEGIN): rolled"
        " back; end it with COMMIT (or ROLLBACK)")
    assert got["closed"]["state"] == "succeeded", got["closed"]["error"]
    assert target.run(f"SELECT x FROM {t}") == [(2,)]


def test_a_template_failing_in_sql_is_a_template_error(engine: Engine, store: Store) -> None:
    """A sql task's (and a foreach query's) template failing when it renders said
    `TemplateRuntimeError: ...` or `UndefinedError: ...` where every other task says
    `template error: ...`; and a null param through `ident` made the table "None"."""
    run_id, _ = run_job(engine, json.dumps({
        "job": "sqltpl", "connections": {"db": "sqlite:///:memory:"},
        "defaults": {"connection": "db"}, "params": {"t": None, "n": 1},
        "tasks": {
            "mk": {"sql": "CREATE TABLE {{ params.t | ident }} (x INT)"},
            "div": {"sql": "SELECT {{ params.n / 0 }}"},
            "each": {"foreach": {"sql": "SELECT x FROM {{ params.t | ident }}"},
                     "sql": "SELECT 1"}}}))
    got = tasks(store, run_id)
    null = "template error: ident expects a name (text or a number), got none (null)"
    assert got["mk"]["error"] == null
    assert got["div"]["error"] == "template error: ZeroDivisionError: division by zero"
    assert got["each"]["error"] == f"foreach items: {null}"
    assert f"taskplan: {null}" in log_text(store, got["mk"]["id"])


def test_a_task_starts_in_a_fresh_session_whatever_the_one_before_set(
        engine: Engine, store: Store, target: Target) -> None:
    """Connections are pooled: a task's `SET search_path`, `SET sql_mode`, `SET @var`, a temp
    table or a PRAGMA stayed on its connection, and the next task (of any job on that
    connection URL) ran under them. Each task starts as a new session would."""
    tmp = target.quote(target.name("tmp"))
    if target.kind == "postgresql":
        setup = f"SET search_path TO nowhere_schema; CREATE TEMP TABLE {tmp} (x INT)"
        probe = ("SELECT current_setting('search_path') AS v,"
                 f" (SELECT count(*) FROM pg_tables WHERE tablename = '{target.name('tmp')}')"
                 " AS n")
        want = {"v": '"$user", public', "n": 0}
    elif target.kind == "mysql":
        setup = (f"SET @leak = 'from a'; SET SESSION sql_mode = 'ANSI_QUOTES';"
                 f" CREATE TEMPORARY TABLE {tmp} (x INT)")
        probe = ("SELECT @leak AS v, @@SESSION.sql_mode LIKE '%ANSI_QUOTES%' AS n,"
                 " 'é' AS e")
        want = {"v": None, "n": 0, "e": "é"}
    else:
        setup = f"PRAGMA foreign_keys = ON; CREATE TEMP TABLE {tmp} (x INT)"
        probe = ("SELECT (SELECT foreign_keys FROM pragma_foreign_keys) AS v,"
                 " (SELECT count(*) FROM sqlite_temp_master) AS n")
        want = {"v": 0, "n": 0}
    run_id, _ = run_job(engine, job({"a": {"sql": setup},
                                     "b": {"depends_on": ["a"], "sql": probe}}), slots=1)
    got = tasks(store, run_id)
    assert got["a"]["state"] == "succeeded", got["a"]["error"]
    assert got["b"]["state"] == "succeeded", got["b"]["error"]
    assert got["b"]["result"]["rows"] == [want]
    if target.kind == "postgresql":
        # The reset keeps the statements psycopg prepares on a connection (it does so at a
        # statement's 5th run): DISCARD ALL dropped them, and the 6th run failed.
        chain = {f"t{i}": {"sql": "SELECT CAST(:n AS int) + 1 AS x",
                           **({"depends_on": [f"t{i - 1}"]} if i else {})} for i in range(8)}
        run_id, _ = run_job(engine, job(chain), params={"n": 1}, slots=1)
        assert {t["state"] for t in tasks(store, run_id).values()} == {"succeeded"}


def test_a_timestamp_with_time_zone_under_a_non_iso_datestyle(engine: Engine, store: Store,
                                                               target: Target) -> None:
    """A database whose DateStyle is German, SQL or Postgres (as pgAgent's users' often are)
    failed every sql task returning a timestamptz: psycopg reads those only in ISO style
    ("can't parse timestamptz with DateStyle 'German, DMY'"). The value comes back as the
    server's own text, which binds back to it on that server."""
    if target.kind != "postgresql":
        pytest.skip("PostgreSQL's DateStyle")
    sql = ("SET DateStyle = 'German, DMY';"
           " SELECT TIMESTAMPTZ '2026-01-02 03:04:05+00' AT TIME ZONE 'UTC' AS plain,"
           " TIMESTAMPTZ '2026-01-02 03:04:05+00' AS at")
    run_id, _ = run_job(engine, job({"s": {"sql": sql}}))
    got = tasks(store, run_id)["s"]
    assert got["state"] == "succeeded", got["error"]
    row = got["result"]["rows"][0]
    assert row["plain"] == "2026-01-02T03:04:05"
    assert row["at"].startswith(("02.01.2026 ", "01.02.2026 ")), row["at"]
