"""The SQL script splitter: `;` splits only in code, never in quotes, dollar quotes or comments."""

from __future__ import annotations

import pytest

from taskplan.executors.sqltext import protect_literals, segments, split_statements


def test_plain_statements() -> None:
    assert split_statements("select 1; select 2;\n\nselect 3") == [
        "select 1", "select 2", "select 3"]


def test_empty_and_comment_only_statements_are_dropped() -> None:
    assert split_statements(";; -- nothing;\n /* x; */ ;") == []
    assert split_statements("") == []


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_semicolon_in_single_quotes(dialect: str) -> None:
    assert split_statements("insert into t values ('a;b', 'it''s;'); select 1", dialect) == [
        "insert into t values ('a;b', 'it''s;')", "select 1"]


def test_double_quoted_identifiers() -> None:
    assert split_statements('select "a;b" from "t;""x"; select 2') == [
        'select "a;b" from "t;""x"', "select 2"]


def test_dollar_quotes() -> None:
    script = """
    create function f() returns int language plpgsql as $$
    begin
      perform 1; return 2;
    end $$;
    do $body$ begin raise notice 'x;$$;'; end $body$;
    select $1, a$b$ from t;
    """
    stmts = split_statements(script, "postgresql")
    assert len(stmts) == 3
    assert stmts[0].endswith("end $$")
    assert stmts[1].startswith("do $body$") and stmts[1].endswith("$body$")
    assert stmts[2] == "select $1, a$b$ from t"


def test_comments() -> None:
    script = "select 1 -- not here; \n; /* nor; here /* nested; */ still; */ select 2; # x;\n"
    assert split_statements(script, "postgresql") == [
        "select 1 -- not here;", "/* nor; here /* nested; */ still; */ select 2",
        "# x"]  # '#' is not a comment on PostgreSQL; the server will say so
    assert split_statements("select 1; # a; b\nselect 2", "mysql") == [
        "select 1", "# a; b\nselect 2"]


def test_mysql_backslash_escapes_and_backticks() -> None:
    assert split_statements(r"select 'a\';b', `c;d`; select 2", "mysql") == [
        r"select 'a\';b', `c;d`", "select 2"]
    # Standard strings on PostgreSQL: a backslash is an ordinary character...
    assert split_statements(r"select 'a\'; select 2", "postgresql") == [
        r"select 'a\'", "select 2"]
    # ...except in E'' strings.
    assert split_statements(r"select E'a\';b'; select 2", "postgresql") == [
        r"select E'a\';b'", "select 2"]


def test_sqlite_brackets() -> None:
    assert split_statements("select [a;b] from t; select 2", "sqlite") == [
        "select [a;b] from t", "select 2"]


def test_unterminated_quote_runs_to_the_end() -> None:
    assert split_statements("select 'a; select 2") == ["select 'a; select 2"]


def test_call_is_one_statement() -> None:
    assert split_statements("CALL stage_orders(:day);") == ["CALL stage_orders(:day)"]


def test_segments_round_trip() -> None:
    text = "select 'a', \"b\", $$c$$ -- d\n/* e */;"
    assert "".join(t for _, t in segments(text)) == text


def test_protect_literals_escapes_colons_outside_code() -> None:
    assert protect_literals("select :a, ':b', x::int, $$:c$$ -- :d\n") == (
        "select :a, '\\:b', x\\:\\:int, $$\\:c$$ -- \\:d\n")


def test_a_cast_right_after_a_bind_keeps_the_bind() -> None:
    from sqlalchemy import text
    from sqlalchemy.dialects import postgresql

    clause = text(protect_literals("SELECT :day::date + 1, x::int, ':a::b'"))
    assert list(clause._bindparams) == ["day"]
    compiled = str(clause.compile(dialect=postgresql.dialect()))  # type: ignore[no-untyped-call]
    assert compiled == "SELECT %(day)s::date + 1, x::int, ':a::b'"


def test_a_mysql_procedure_body_is_one_statement() -> None:
    script = """
    DROP PROCEDURE IF EXISTS addfact;
    CREATE DEFINER=`etl`@`%` PROCEDURE addfact(d varchar(20), k int)
    main: BEGIN
      DECLARE i INT DEFAULT 0;
      IF k < 0 THEN LEAVE main; END IF;
      WHILE i < k DO
        INSERT INTO facts VALUES (d, CASE WHEN i = 0 THEN 'first;' ELSE 'next' END);
        SET i = i + 1;
      END WHILE;
      BEGIN SELECT 1; END;
      CASE k WHEN 1 THEN SELECT 'one'; ELSE SELECT 'many'; END CASE;
      REPEAT SET i = i - 1; UNTIL i <= 0 END REPEAT;
    END main;
    CALL addfact('2026-12-04', 3);
    """
    stmts = split_statements(script, "mysql")
    assert len(stmts) == 3, stmts
    assert stmts[1].startswith("CREATE DEFINER") and stmts[1].endswith("END main")
    assert stmts[2] == "CALL addfact('2026-12-04', 3)"


def test_a_sqlite_trigger_body_is_one_statement() -> None:
    script = ("create table t (a); create table log (a);\n"
              "create trigger keep after insert on t begin\n"
              "  insert into log values (new.a); insert into log values (-new.a);\n"
              "end;\ninsert into t values (1)")
    assert split_statements(script, "sqlite") == [
        "create table t (a)", "create table log (a)",
        "create trigger keep after insert on t begin\n"
        "  insert into log values (new.a); insert into log values (-new.a);\nend",
        "insert into t values (1)"]


def test_a_postgresql_begin_atomic_body_is_one_statement() -> None:
    script = ("CREATE OR REPLACE PROCEDURE p(k int) LANGUAGE SQL BEGIN ATOMIC\n"
              "  INSERT INTO t VALUES (k); INSERT INTO t VALUES (k + 1);\nEND;\n"
              "BEGIN; CALL p(1); COMMIT;")
    assert split_statements(script, "postgresql") == [
        "CREATE OR REPLACE PROCEDURE p(k int) LANGUAGE SQL BEGIN ATOMIC\n"
        "  INSERT INTO t VALUES (k); INSERT INTO t VALUES (k + 1);\nEND",
        "BEGIN", "CALL p(1)", "COMMIT"]


def test_begin_and_case_outside_a_routine_split_as_before() -> None:
    assert split_statements("begin; select case when 1 then 2 end; commit", "postgresql") == [
        "begin", "select case when 1 then 2 end", "commit"]
    assert split_statements("create table function_log (a int); begin; select 1") == [
        "create table function_log (a int)", "begin", "select 1"]


def test_nested_blocks_ending_together() -> None:
    script = "create procedure p() begin begin select 1; end; end; call p()"
    assert split_statements(script, "mysql") == [
        "create procedure p() begin begin select 1; end; end", "call p()"]


def test_a_mariadb_anonymous_block_is_one_statement() -> None:
    """MariaDB's `BEGIN NOT ATOMIC ... END` (a compound statement run at once, with an
    optional label) was split at each inner `;`, so the server met `BEGIN NOT ATOMIC DECLARE
    x INT` alone and refused it."""
    script = ("BEGIN NOT ATOMIC DECLARE x INT DEFAULT 0; IF x = 0 THEN SELECT 1; END IF;"
              " SET x = 1; END; select 2;\n"
              "lbl: begin not atomic while 0 do select 3; end while; end lbl; begin; commit")
    assert split_statements(script, "mysql") == [
        "BEGIN NOT ATOMIC DECLARE x INT DEFAULT 0; IF x = 0 THEN SELECT 1; END IF; SET x = 1;"
        " END", "select 2",
        "lbl: begin not atomic while 0 do select 3; end while; end lbl", "begin", "commit"]
