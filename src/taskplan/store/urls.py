"""Database URLs: which backend a URL names, and how to show one without its secrets."""

from __future__ import annotations

import os

from taskplan.errors import UsageError
from taskplan.redact import mask_url

__all__ = ["backend_of", "check_store_url", "mask_url", "sqlalchemy_url", "sqlite_path"]

_STORE_FORMS = "sqlite:///FILE (relative), sqlite:////abs/FILE or postgresql://USER@HOST/DB"


def check_store_url(url: str) -> None:
    """UsageError (exit 2) naming the accepted forms, for anything that is not a store URL."""
    shown = mask_url(url)
    if "://" not in url:
        hint = (f"; for a SQLite file say sqlite:///{url}" if url.endswith((".db", ".sqlite"))
                or "/" in url else "")
        raise UsageError(f"not a store URL: {shown!r} (expected {_STORE_FORMS}){hint}")
    backend = backend_of(url)
    if backend == "sqlite":
        if not url.startswith("sqlite:///") or not sqlite_path(url).strip():
            raise UsageError(f"not a SQLite store URL: {shown!r} (expected {_STORE_FORMS})")
        path = sqlite_path(url)
        if path == ":memory:":
            raise UsageError("the store cannot be sqlite:///:memory: (each connection would see"
                             " its own empty database); use a file")
        if os.path.isdir(path):
            raise UsageError(f"the store {shown} is a folder: name a file in it, e.g."
                             f" sqlite:///{os.path.join(path, 'taskplan.db')}")
        if os.path.exists(path) and not os.path.isfile(path):
            # /dev/null, a pipe: SQLite would fail later with a word about transactions.
            raise UsageError(f"the store {shown} is not a regular file: a SQLite store is one")
        return
    if backend == "postgresql":
        return
    extra = (" (MariaDB/MySQL work as task connections, not as the store)"
             if backend in ("mysql", "mariadb") else "")
    raise UsageError(f"unsupported store URL {shown!r}: taskplan keeps its state in SQLite or"
                     f" PostgreSQL ({_STORE_FORMS}){extra}")


def backend_of(url: str) -> str:
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    return scheme


def sqlite_path(url: str) -> str:
    """The file path of a sqlite:/// URL (sqlite:///rel.db, sqlite:////abs.db)."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a SQLite file URL: {url}")
    path = url[len("sqlite:///"):]
    return path.split("?", 1)[0] or ":memory:"


def missing_sqlite_file(url: str) -> bool:
    """A SQLite file store that does not exist yet (opening it would create it)."""
    if not url.startswith("sqlite:///"):
        return False
    path = sqlite_path(url)
    return path != ":memory:" and not os.path.exists(path)


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy should use: PostgreSQL goes through psycopg 3."""
    if backend_of(url) == "postgresql":
        rest = url.split("://", 1)[1]
        return "postgresql+psycopg://" + rest
    return url
