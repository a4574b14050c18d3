"""Shared fixtures: a fresh taskplan store per test, on every backend the suite supports.

`store` is parametrized over backends so the store, engine and agent suites run unchanged on
SQLite and PostgreSQL. PostgreSQL runs by default against TASKPLAN_TEST_PG_URL (default
postgresql://postgres@127.0.0.1:5432); TASKPLAN_TEST_PG=0 turns it off. A missing server fails
the run under CI=true (a CI job that silently skips its PostgreSQL half proves nothing) and
skips those params elsewhere, e.g. on a laptop without a server.

Speed: a test that uses `store` gets a copy of a template database migrated once per session
(CREATE DATABASE ... TEMPLATE), and databases are dropped on a background thread; a test that
asks only for `store_url` gets an empty database (the migration tests).
"""

from __future__ import annotations

import atexit
import os
import secrets
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from taskplan.engine import Engine
from taskplan.store.db import Store

PG_ADMIN_URL = os.environ.get("TASKPLAN_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432")
PG_ENABLED = os.environ.get("TASKPLAN_TEST_PG", "1") != "0"
IN_CI = os.environ.get("CI", "").lower() == "true"
DROP_BATCH = 40
# Checked job files are cached per user (spec/checked.py): the suite, and the commands it starts
# as processes, keep theirs in a folder of its own rather than in the user's.
os.environ.setdefault("TASKPLAN_CACHE_DIR", tempfile.mkdtemp(prefix="taskplan-test-cache-"))


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class _PgDatabases:
    """Creates test databases (empty, or copies of a migrated template) and drops them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._template: str | None = None
        self._drops: list[threading.Thread] = []
        self._pending: list[str] = []
        self._unreachable: str | None = None

    def admin(self) -> Any:
        import psycopg

        return psycopg.connect(f"{PG_ADMIN_URL}/postgres", autocommit=True, connect_timeout=5)

    def check(self) -> None:
        if not PG_ENABLED:
            pytest.skip("PostgreSQL tests turned off (TASKPLAN_TEST_PG=0)")
        if self._unreachable is None:
            try:
                self.admin().close()
                self._unreachable = ""
            except Exception as exc:
                self._unreachable = f"PostgreSQL server not reachable at {PG_ADMIN_URL}: {exc}"
        if self._unreachable:
            if IN_CI:
                pytest.fail(self._unreachable)
            pytest.skip(self._unreachable)

    def template(self) -> str:
        with self._lock:
            if self._template is None:
                name = f"tp_tpl_{secrets.token_hex(6)}"
                with self.admin() as admin:
                    admin.execute(f'CREATE DATABASE "{name}"')
                Store(f"{PG_ADMIN_URL}/{name}").close()
                atexit.register(self._drop_now, name)
                self._template = name
            return self._template

    def create(self, *, migrated: bool) -> str:
        self.check()
        name = f"tp_test_{secrets.token_hex(6)}"
        source = f' TEMPLATE "{self.template()}"' if migrated else ""
        with self.admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}"{source}')
        return name

    def drop(self, name: str) -> None:
        """Dropping takes most of a second and slows the next CREATE DATABASE down: drop in
        batches of DROP_BATCH in the background (a few MB of disk each until then)."""
        with self._lock:
            self._pending.append(name)
            if len(self._pending) < DROP_BATCH:
                return
            batch, self._pending = self._pending, []
        self._spawn_drops(batch)

    def _spawn_drops(self, names: list[str]) -> None:
        def drop_all() -> None:
            for name in names:
                self._drop_now(name)

        thread = threading.Thread(target=drop_all, daemon=True)
        thread.start()
        with self._lock:
            self._drops = [t for t in self._drops if t.is_alive()] + [thread]

    def _drop_now(self, name: str) -> None:
        try:
            with self.admin() as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception:
            pass

    def wait_drops(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        if pending:
            self._spawn_drops(pending)
        with self._lock:
            drops, self._drops = self._drops, []
        for thread in drops:
            thread.join(30)


PG = _PgDatabases()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    PG.wait_drops()


def _fresh_pg_database(*, migrated: bool = False) -> Iterator[str]:
    name = PG.create(migrated=migrated)
    try:
        yield f"{PG_ADMIN_URL}/{name}"
    finally:
        PG.drop(name)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL naming a fresh database of each backend, dropped afterwards.

    Empty unless the test also uses `store`, which needs it migrated anyway.
    """
    if request.param == "sqlite":
        yield sqlite_url(tmp_path / "taskplan.db")
    else:
        # Tests that open `store` get a copy of the migrated template (same schema, faster).
        yield from _fresh_pg_database(migrated="store" in request.fixturenames)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """A migrated taskplan store on a fresh database, closed at teardown."""
    st = Store(store_url)
    try:
        yield st
    finally:
        st.close()


@pytest.fixture
def engine(store: Store) -> Engine:
    return Engine(store)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """An empty PostgreSQL database, dropped afterwards (skipped or failed like the
    postgresql param when no server answers)."""
    yield from _fresh_pg_database()
