"""Named business calendars in the store: applied from files, versioned like jobs."""

from __future__ import annotations

import json
from typing import Any

from taskplan.dataclass import dataclass
from taskplan.store.tx import Tx


@dataclass(frozen=True)
class StoredCalendar:
    name: str
    version: int
    definition: dict[str, Any]
    source_path: str
    updated_at: float


def preview_calendar(tx: Tx, name: str, digest: str) -> tuple[int, bool]:
    """What `apply_calendar` would answer, writing nothing: (version number, changed)."""
    row = tx.one("SELECT v.version, v.spec_hash FROM calendars c"
                 " LEFT JOIN calendar_versions v ON v.id = c.current_version_id"
                 " WHERE c.name = :n", {"n": name})
    if row is None:
        return 1, True
    version, spec_hash = row
    if spec_hash == digest:
        return int(version), False
    return int(version or 0) + 1, True


def apply_calendar(tx: Tx, name: str, definition: str, digest: str, source: str, now: float
                   ) -> tuple[int, bool]:
    """Store a calendar definition; a new version only when it changed.
    Returns (version number, changed)."""
    row = tx.one("SELECT c.id, v.version, v.spec_hash FROM calendars c"
                 " LEFT JOIN calendar_versions v ON v.id = c.current_version_id"
                 " WHERE c.name = :n", {"n": name})
    if row is None:
        cal_id = int(tx.scalar("INSERT INTO calendars (name, created_at, updated_at)"
                               " VALUES (:n, :t, :t) RETURNING id", {"n": name, "t": now}))
        number = 1
    else:
        found_id, version, spec_hash = row
        if spec_hash == digest:
            return int(version), False
        cal_id, number = int(found_id), int(version or 0) + 1
    vid = int(tx.scalar(
        "INSERT INTO calendar_versions (calendar_id, version, spec_hash, definition,"
        " source_path, created_at) VALUES (:c, :n, :h, :d, :s, :t) RETURNING id",
        {"c": cal_id, "n": number, "h": digest, "d": definition, "s": source, "t": now}))
    tx.run("UPDATE calendars SET current_version_id = :v, updated_at = :t WHERE id = :c",
           {"v": vid, "t": now, "c": cal_id})
    tx.wake = True  # schedulers re-read their calendars at once
    return number, True


def current_calendars(tx: Tx) -> list[StoredCalendar]:
    """Every calendar at its current version, by name (in code-point order on every backend,
    not in a PostgreSQL database's collation)."""
    rows = sorted(tx.all("SELECT c.name, v.version, v.definition, v.source_path, c.updated_at"
                         " FROM calendars c JOIN calendar_versions v"
                         " ON v.id = c.current_version_id"), key=lambda r: str(r[0]))
    return [StoredCalendar(str(name), int(version), json.loads(definition), str(source),
                           float(updated_at))
            for name, version, definition, source, updated_at in rows]


def calendars_stamp(tx: Tx) -> tuple[int, float]:
    """Changes whenever a calendar is added or gets a new version (cheap to poll)."""
    row = tx.one("SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM calendars")
    assert row is not None
    count, latest = row
    return int(count), float(latest)
