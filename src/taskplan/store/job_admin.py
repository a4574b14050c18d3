"""Removing jobs: deleting a job (keeping or purging its history) and finding the jobs a
folder of job files no longer defines.

A deleted job keeps its `jobs` row with `current_version_id` NULL: every listing, the scheduler
and the trigger index join on the current version, so the job disappears from them, while its
runs stay readable (`runs --job NAME`, `status RUN`). Applying the name again starts a new
version after the old ones. Purging its history deletes the row and everything hanging off it.
"""

from __future__ import annotations

import os

from taskplan.dataclass import dataclass
from taskplan.store import notify_ops
from taskplan.store.db import Tx
from taskplan.store.sched_ops import ACTIVE_RUN

_ACTIVE = ", ".join(f"'{s}'" for s in ACTIVE_RUN)


@dataclass(frozen=True)
class LiveJob:
    job_id: int
    name: str
    source_path: str


def live_job(tx: Tx, name: str) -> LiveJob | None:
    """The job if it exists and is not deleted."""
    row = tx.one("SELECT j.id, j.name, v.source_path FROM jobs j JOIN job_versions v"
                 " ON v.id = j.current_version_id WHERE j.name = :n", {"n": name})
    if row is None:
        return None
    job_id, job, source = row
    return LiveJob(int(job_id), str(job), str(source))


@dataclass(frozen=True)
class RunOwner:
    job: str
    exists: bool  # False once the job was deleted (its runs stay readable)


def retired_job(tx: Tx, name: str) -> int | None:
    """The id of a job deleted with its history kept (no current version), if any."""
    found = tx.scalar("SELECT id FROM jobs WHERE name = :n AND current_version_id IS NULL",
                      {"n": name})
    return None if found is None else int(found)


def job_of_run(tx: Tx, run_id: int) -> RunOwner | None:
    """The job of a run; None for an unknown run."""
    row = tx.one("SELECT j.name, j.current_version_id FROM runs r JOIN jobs j"
                 " ON j.id = r.job_id WHERE r.id = :r", {"r": run_id})
    if row is None:
        return None
    job, current = row
    return RunOwner(str(job), current is not None)


def current_version_id(tx: Tx, job_id: int) -> int:
    return int(tx.scalar("SELECT current_version_id FROM jobs WHERE id = :j", {"j": job_id}))


def version_applied_at(tx: Tx, version_id: int) -> float:
    return float(tx.scalar("SELECT created_at FROM job_versions WHERE id = :v",
                           {"v": version_id}))


def jobs_from_folder(tx: Tx, folder: str) -> list[LiveJob]:
    """Live jobs whose current version was applied from a file directly in `folder`."""
    # Compared as real paths: a folder given through a symbolic link (or applied through one
    # before) is the same folder, not one from which nothing was applied.
    wanted = os.path.normcase(os.path.realpath(folder))
    rows = tx.all("SELECT j.id, j.name, v.source_path FROM jobs j JOIN job_versions v"
                  " ON v.id = j.current_version_id ORDER BY j.name")
    real: dict[str, str] = {}

    def where(path: str) -> str:
        folder_of = os.path.dirname(path)
        if folder_of not in real:
            real[folder_of] = os.path.normcase(os.path.realpath(folder_of))
        return real[folder_of]

    return [LiveJob(int(i), str(n), str(p)) for i, n, p in rows
            if p and where(str(p)) == wanted]


def active_runs(tx: Tx, job_id: int) -> list[int]:
    """Runs of the job (top-level or started by a job task) that have not ended: the queued
    ones first (cancelled in this order, the end of a running one cannot start them)."""
    return [int(r) for (r,) in tx.all(
        f"SELECT id FROM runs WHERE job_id = :j AND state IN ({_ACTIVE})"
        " ORDER BY CASE WHEN state = 'queued' THEN 0 ELSE 1 END, id", {"j": job_id})]


def run_count(tx: Tx, job_id: int) -> int:
    return int(tx.scalar("SELECT COUNT(*) FROM runs WHERE job_id = :j", {"j": job_id}))


def latest_version(tx: Tx, job_id: int) -> int:
    """The highest version number the job ever had (0 if none)."""
    return int(tx.scalar("SELECT COALESCE(MAX(version), 0) FROM job_versions"
                         " WHERE job_id = :j", {"j": job_id}))


def retire_job(tx: Tx, job_id: int, now: float) -> None:
    """Delete a job but keep its runs: no current version, not paused, schedules forgotten."""
    tx.run("UPDATE jobs SET current_version_id = NULL, paused = :f, updated_at = :t"
           " WHERE id = :j", {"f": False, "t": now, "j": job_id})
    tx.run("DELETE FROM schedule_state WHERE job_id = :j", {"j": job_id})


def delete_runs(tx: Tx, ids: list[int]) -> None:
    """Delete runs with their task runs, edges, attempts, logs and events."""
    if not ids:
        return
    marks = ", ".join(str(int(i)) for i in ids)
    tr = f"SELECT id FROM task_runs WHERE run_id IN ({marks})"
    tx.run(f"DELETE FROM log_chunks WHERE task_run_id IN ({tr})")
    # Both ends of an edge are task runs of one run: by up_id the primary key finds them
    # (by down_id every batch of a purge would read the whole table).
    tx.run(f"DELETE FROM task_edges WHERE up_id IN ({tr})")
    tx.run(f"DELETE FROM attempts WHERE run_id IN ({marks})")
    tx.run(f"DELETE FROM events WHERE run_id IN ({marks})")
    notify_ops.delete_of_runs(tx, marks)
    tx.run(f"DELETE FROM task_runs WHERE run_id IN ({marks})")
    tx.run(f"DELETE FROM runs WHERE id IN ({marks})")


def purge_job(tx: Tx, job_id: int) -> int:
    """Delete a job with its versions, firings and runs (and the sub-job runs those started);
    returns how many runs were deleted."""
    ids = {int(r) for (r,) in tx.all("SELECT id FROM runs WHERE job_id = :j", {"j": job_id})}
    if ids:
        marks = ", ".join(str(i) for i in sorted(ids))
        ids |= {int(r) for (r,) in tx.all(
            f"SELECT id FROM runs WHERE root_run_id IN ({marks})")}
    delete_runs(tx, sorted(ids))
    for table in ("schedule_state", "schedule_firings", "trigger_firings", "backfills"):
        tx.run(f"DELETE FROM {table} WHERE job_id = :j", {"j": job_id})
    tx.run("UPDATE jobs SET current_version_id = NULL WHERE id = :j", {"j": job_id})
    tx.run("DELETE FROM job_versions WHERE job_id = :j", {"j": job_id})
    tx.run("DELETE FROM jobs WHERE id = :j", {"j": job_id})
    return len(ids)
