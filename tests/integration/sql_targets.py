"""User databases that sql tasks run against: SQLite, PostgreSQL and MariaDB.

`target` is a fixture over the three. A server that is not reachable skips its half, except
under CI=true, where it fails: a CI job that silently skips its database half proves nothing.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from taskplan.executors.sql import driver_url

PG_URL = os.environ.get("TASKPLAN_TEST_TARGET_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TASKPLAN_TEST_TARGET_MYSQL", "mysql://root:@127.0.0.1:3306/test")
IN_CI = os.environ.get("CI", "").lower() == "true"


@dataclass
class Target:
    kind: str  # sqlite | postgresql | mysql
    url: str
    prefix: str  # a unique table-name prefix for this test

    def name(self, base: str) -> str:
        return f"{self.prefix}_{base}"

    def run(self, sql: str, params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        engine = create_engine(driver_url(self.url), isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                res = conn.execute(text(sql), params or {})
                return [tuple(r) for r in res] if res.returns_rows else []
        finally:
            engine.dispose()

    def quote(self, name: str) -> str:
        return f"`{name}`" if self.kind == "mysql" else f'"{name}"'

    def sleep_sql(self, seconds: int, marker: str) -> str:
        if self.kind == "postgresql":
            return f"SELECT pg_sleep({seconds}) /* {marker} */"
        if self.kind == "mysql":
            return f"SELECT SLEEP({seconds}) /* {marker} */"
        # SQLite has no sleep: a long recursive count stands in for it.
        return ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c"
                f" WHERE x < {seconds} * 100000000) SELECT count(*) FROM c /* {marker} */")

    def running_with(self, marker: str) -> int:
        """How many statements carrying `marker` the server is running now."""
        if self.kind == "postgresql":
            return len(self.run("SELECT pid FROM pg_stat_activity WHERE query LIKE :m"
                                " AND pid <> pg_backend_pid()", {"m": f"%/* {marker} */%"}))
        if self.kind == "mysql":
            return len(self.run("SELECT id FROM information_schema.processlist WHERE info LIKE"
                                " :m AND id <> CONNECTION_ID()", {"m": f"%/* {marker} */%"}))
        return 0


def _reachable(url: str) -> str | None:
    try:
        engine = create_engine(driver_url(url), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]


_seen: dict[str, str | None] = {}


def make_target(kind: str, tmp_path: Path) -> Target:
    prefix = f"tp{secrets.token_hex(4)}"
    if kind == "sqlite":
        return Target("sqlite", f"sqlite:///{tmp_path / 'target.db'}", prefix)
    url = PG_URL if kind == "postgresql" else MYSQL_URL
    if url not in _seen:
        _seen[url] = _reachable(url)
    problem = _seen[url]
    if problem is not None:
        if IN_CI:
            pytest.fail(f"{kind} server not reachable: {problem}")
        pytest.skip(f"{kind} server not reachable: {problem}")
    return Target(kind, url, prefix)


@pytest.fixture(params=["sqlite", "postgresql", "mysql"])
def target(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Iterator[Target]:
    """A user database, its URL exported as TP_TARGET_URL, and the tables it made dropped."""
    t = make_target(request.param, tmp_path)
    monkeypatch.setenv("TP_TARGET_URL", t.url)
    yield t
    if t.kind == "sqlite":
        return
    if t.kind == "postgresql":
        rows = t.run("SELECT tablename FROM pg_tables WHERE tablename LIKE :p",
                     {"p": t.prefix + "%"})
        for (name,) in rows:
            t.run(f'DROP TABLE IF EXISTS "{name}" CASCADE')
        for (name,) in t.run("SELECT proname FROM pg_proc WHERE proname LIKE :p",
                             {"p": t.prefix + "%"}):
            t.run(f'DROP PROCEDURE IF EXISTS "{name}"')
        for (name,) in t.run("SELECT matviewname FROM pg_matviews WHERE matviewname LIKE :p",
                             {"p": t.prefix + "%"}):
            t.run(f'DROP MATERIALIZED VIEW IF EXISTS "{name}"')
    else:
        for (name,) in t.run("SELECT table_name FROM information_schema.tables WHERE"
                             " table_schema = DATABASE() AND table_name LIKE :p",
                             {"p": t.prefix + "%"}):
            t.run(f"DROP TABLE IF EXISTS `{name}`")
        for (name,) in t.run("SELECT routine_name FROM information_schema.routines WHERE"
                             " routine_schema = DATABASE() AND routine_name LIKE :p",
                             {"p": t.prefix + "%"}):
            t.run(f"DROP PROCEDURE IF EXISTS `{name}`")
