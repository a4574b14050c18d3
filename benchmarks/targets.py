"""Where a repetition's store lives: a fresh SQLite file, or a fresh PostgreSQL database.

`--db sqlite` gives each repetition a new file in a temp folder; `--db sqlite:///path.db`
reuses the caller's file. `--db postgresql://...` names a server (and a database to connect
to for administration): each repetition gets `CREATE DATABASE tp_bench_<random>` on that
server, dropped afterwards (`DROP DATABASE ... WITH (FORCE)`, so a crashed agent's
connections do not keep it alive).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from taskplan.cli.common import one_line
from taskplan.store.urls import backend_of, mask_url, sqlite_path


def pg_dsn(url: str) -> str:
    """A URL psycopg accepts (no SQLAlchemy driver suffix)."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.lower() != "postgresql" else url


def with_database(url: str, name: str) -> str:
    """The same server URL with another database name."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or "postgres"


@dataclass(frozen=True)
class Target:
    spec: str  # what --db said: "sqlite" or a URL
    workdir: str  # a temp folder for this process: job module files, SQLite stores

    @property
    def backend(self) -> str:
        return "sqlite" if self.spec == "sqlite" else backend_of(self.spec)

    @property
    def shown(self) -> str:
        return self.spec if self.spec == "sqlite" else mask_url(self.spec)

    @contextmanager
    def fresh(self, label: str) -> Iterator[str]:
        """A store URL for one repetition, removed afterwards when we created it."""
        if self.spec == "sqlite":
            fd, path = tempfile.mkstemp(prefix=f"{label}-", suffix=".db", dir=self.workdir)
            os.close(fd)
            os.unlink(path)  # let the store create it, as a user's first run would
            try:
                yield f"sqlite:///{path}"
            finally:
                for suffix in ("", "-wal", "-shm"):
                    try:
                        os.unlink(path + suffix)
                    except FileNotFoundError:
                        pass
            return
        if self.backend == "sqlite":
            yield self.spec  # the caller's own file: runs are scoped by run id, so it can grow
            return
        if self.backend == "postgresql":
            with self._fresh_pg() as url:
                yield url
            return
        raise SystemExit(f"--db {self.shown}: expected 'sqlite', sqlite:/// or postgresql://")

    @contextmanager
    def _fresh_pg(self) -> Iterator[str]:
        import psycopg

        name = f"tp_bench_{secrets.token_hex(6)}"
        admin = pg_dsn(self.spec)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield with_database(self.spec, name)
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def check(spec: str) -> None:
    """Fail early, in the parent, on a --db the rows cannot use."""
    if spec == "sqlite":
        return
    if backend_of(spec) == "sqlite":
        folder = os.path.dirname(os.path.abspath(sqlite_path(spec)))
        if not os.path.isdir(folder):
            raise SystemExit(f"--db {spec}: no folder {folder}")
        if not os.access(folder, os.W_OK):
            raise SystemExit(f"--db {spec}: cannot write in {folder}")
        return
    if backend_of(spec) == "postgresql":
        import psycopg

        try:
            with psycopg.connect(pg_dsn(spec), autocommit=True, connect_timeout=5) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            reason = one_line(str(exc))
            raise SystemExit(f"--db {mask_url(spec)}: cannot connect: {reason}") from None
        return
    raise SystemExit(f"--db {mask_url(spec)}: expected 'sqlite', sqlite:/// or postgresql://")
