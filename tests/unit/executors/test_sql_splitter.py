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
