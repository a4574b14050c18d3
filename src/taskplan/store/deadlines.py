"""Runs with deadlines: set at creation, read and marked by the deadline checker."""

from __future__ import annotations

from taskplan.dataclass import dataclass
from taskplan.store.db import Tx
from taskplan.store.ops import add_events


def set_deadline(tx: Tx, run_id: int, at: float | None, state: str | None) -> None:
    tx.run("UPDATE runs SET deadline_at = :a, deadline_state = :s WHERE id = :r",
           {"a": at, "s": state, "r": run_id})


def run_times(tx: Tx, run_id: int) -> tuple[float, float | None, bool]:
    """(the firing: fire_at, else creation; the start; made by a backfill) of a run."""
    row = tx.one("SELECT COALESCE(fire_at, created_at), started_at, trigger FROM runs"
                 " WHERE id = :r", {"r": run_id})
    assert row is not None
    fired, started, trigger = row
    return float(fired), started, trigger == "backfill"


def pending(tx: Tx, run_ids: list[int]) -> list[tuple[int, int]]:
    """(run id, version id) of those runs whose deadline waits for their start."""
    if not run_ids:
        return []
    marks = ", ".join(str(int(i)) for i in run_ids)
    return [(int(r), int(v)) for r, v in tx.all(
        f"SELECT id, version_id FROM runs WHERE id IN ({marks})"
        " AND deadline_state = 'pending' ORDER BY id")]


@dataclass(frozen=True)
class DeadlineRun:
    run_id: int
    version_id: int
    fired_at: float
    started_at: float | None
    deadline_at: float | None
    deadline_state: str | None


def newest_run(tx: Tx) -> int:
    """The highest run id: a checker looks again at once when a run was created."""
    return int(tx.scalar("SELECT COALESCE(MAX(id), 0) FROM runs") or 0)


def watched(tx: Tx) -> list[DeadlineRun]:
    """Unfinished runs whose deadline is not missed yet (few: served by the state index)."""
    rows = tx.all(
        "SELECT id, version_id, COALESCE(fire_at, created_at), started_at, deadline_at,"
        " deadline_state FROM runs WHERE state IN ('queued', 'running', 'stopping')"
        " AND (deadline_at IS NOT NULL OR deadline_state = 'pending')"
        " AND (deadline_state IS NULL OR deadline_state <> 'missed') ORDER BY id")
    return [DeadlineRun(int(run_id), int(version_id), float(fired), started_at, deadline_at,
                        deadline_state)
            for run_id, version_id, fired, started_at, deadline_at, deadline_state in rows]


def mark(tx: Tx, run_id: int, state: str, at: float, detail: str) -> bool:
    """Move a run's deadline state forward and record the event, once: False when another
    checker already did (or the run ended meanwhile)."""
    done = tx.run(
        "UPDATE runs SET deadline_state = :s WHERE id = :r"
        " AND state IN ('queued', 'running', 'stopping')"
        " AND (deadline_state IS NULL OR deadline_state NOT IN (:s, 'missed'))",
        {"s": state, "r": run_id})
    if done != 1:
        return False
    add_events(tx, [(at, run_id, None, f"deadline_{state}", detail)])
    tx.wake = True
    return True
