"""Database URLs: which backend a URL names, and how to show one without its secrets."""

from __future__ import annotations

from taskplan.redact import mask_url

__all__ = ["backend_of", "mask_url", "sqlalchemy_url", "sqlite_path"]


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


def sqlalchemy_url(url: str) -> str:
    """The URL SQLAlchemy should use: PostgreSQL goes through psycopg 3."""
    if backend_of(url) == "postgresql":
        rest = url.split("://", 1)[1]
        return "postgresql+psycopg://" + rest
    return url
