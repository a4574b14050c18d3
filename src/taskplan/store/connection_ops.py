"""Shared connections applied from connections files: the URL as written (its `${...}`
references unresolved), by name."""

from __future__ import annotations

from taskplan.dataclass import dataclass
from taskplan.store.db import Tx


@dataclass(frozen=True)
class SharedConnection:
    name: str
    url: str  # as written: references unresolved, never a secret
    source: str


def upsert(tx: Tx, name: str, url: str, source: str, now: float) -> str:
    """Store one connection; returns 'new', 'changed' or 'unchanged'."""
    row = tx.one("SELECT url, source_path FROM connections WHERE name = :n", {"n": name})
    if row is None:
        tx.run("INSERT INTO connections (name, url, source_path, updated_at)"
               " VALUES (:n, :u, :s, :t)", {"n": name, "u": url, "s": source, "t": now})
        return "new"
    old_url, old_source = row
    if (old_url, old_source) == (url, source):
        return "unchanged"
    tx.run("UPDATE connections SET url = :u, source_path = :s, updated_at = :t"
           " WHERE name = :n", {"n": name, "u": url, "s": source, "t": now})
    return "changed" if old_url != url else "unchanged"


def all_connections(tx: Tx) -> list[SharedConnection]:
    return [SharedConnection(str(n), str(u), str(s)) for n, u, s in tx.all(
        "SELECT name, url, source_path FROM connections ORDER BY name")]


def url_of(tx: Tx, name: str) -> str | None:
    value = tx.scalar("SELECT url FROM connections WHERE name = :n", {"n": name})
    return None if value is None else str(value)

