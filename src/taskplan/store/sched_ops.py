"""Named operations of the scheduler and of cross-job triggers: leader leases, schedule state,
firing rows (idempotent by primary key), queued runs.

Idempotence is by constraint: a firing is an INSERT ... ON CONFLICT DO NOTHING whose rowcount
says whether this transaction won; the run is created in the same transaction only if it did.
"""

from __future__ import annotations

from typing import Any

from taskplan.store.db import Row, Tx

ACTIVE_RUN = ("queued", "running", "stopping")


# -- leader lease -------------------------------------------------------------------------
def acquire_lease(tx: Tx, name: str, holder: str, now: float, until: float) -> bool:
    """Take or renew the lease `name`; True if `holder` holds it until `until`."""
    taken = tx.run(
        "UPDATE leases SET holder = :h, until = :u WHERE name = :n"
        " AND (until < :t OR holder = :h)",
        {"h": holder, "u": until, "n": name, "t": now},
    )
    if taken:
        return True
    return tx.run(
        "INSERT INTO leases (name, holder, until) VALUES (:n, :h, :u)"
        " ON CONFLICT (name) DO NOTHING",
        {"n": name, "h": holder, "u": until},
    ) == 1


def holds_lease(tx: Tx, name: str, holder: str, now: float) -> bool:
    """Fencing: is `holder` still the unexpired holder? (Locks the row on PostgreSQL.)"""
    lock = " FOR UPDATE" if tx.pg else ""
    row = tx.one(f"SELECT holder, until FROM leases WHERE name = :n{lock}", {"n": name})
    return row is not None and row[0] == holder and float(row[1]) >= now


def lease_row(tx: Tx, name: str) -> Row | None:
    return tx.one("SELECT holder, until FROM leases WHERE name = :n", {"n": name})


def release_lease(tx: Tx, name: str, holder: str) -> None:
    tx.run("UPDATE leases SET until = 0 WHERE name = :n AND holder = :h",
           {"n": name, "h": holder})


# -- definitions ----------------------------------------------------------------------------
def definitions_mark(tx: Tx) -> tuple[int, float]:
    """Changes whenever a job is added or gets a new version (the scheduler's wake check)."""
    row = tx.one("SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM jobs")
    assert row is not None
    return int(row[0]), float(row[1])


def current_jobs(tx: Tx) -> list[Row]:
    """(job_id, name, current version id, that version's created_at) of every job."""
    return tx.all(
        "SELECT j.id, j.name, v.id, v.created_at FROM jobs j"
        " JOIN job_versions v ON v.id = j.current_version_id ORDER BY j.id")


def job_names(tx: Tx) -> list[str]:
    """Names of the jobs that exist (a deleted job has no current version)."""
    return [str(n) for (n,) in tx.all(
        "SELECT name FROM jobs WHERE current_version_id IS NOT NULL ORDER BY name")]


def set_job_paused(tx: Tx, name: str, paused: bool) -> bool | None:
    """Pause or resume a job; None if there is no such job, else whether it changed."""
    was = tx.scalar("SELECT paused FROM jobs WHERE name = :n"
                    " AND current_version_id IS NOT NULL", {"n": name})
    if was is None:
        return None
    if bool(was) == paused:
        return False
    tx.run("UPDATE jobs SET paused = :p WHERE name = :n", {"p": paused, "n": name})
    return True


def job_paused(tx: Tx, job_id: int) -> bool:
    return bool(tx.scalar("SELECT paused FROM jobs WHERE id = :j", {"j": job_id}))


def lock_job(tx: Tx, job_id: int) -> None:
    """Serialise trigger checks of one dependent job across processes (PostgreSQL)."""
    if tx.pg:
        tx.one("SELECT id FROM jobs WHERE id = :j FOR UPDATE", {"j": job_id})


# -- schedules ------------------------------------------------------------------------------
def schedule_states(tx: Tx) -> dict[tuple[int, str], tuple[int, float | None]]:
    return {(int(j), str(k)): (int(c), None if t is None else float(t)) for j, k, c, t in tx.all(
        "SELECT job_id, schedule_key, fired_count, last_fire_at FROM schedule_state")}


def advance_schedule(tx: Tx, job_id: int, key: str, last_fire_at: float, fired: int) -> None:
    """Move a schedule's mark forward (never back) and add to its count of runs."""
    tx.run(
        "INSERT INTO schedule_state (job_id, schedule_key, fired_count, last_fire_at)"
        " VALUES (:j, :k, :c, :t) ON CONFLICT (job_id, schedule_key) DO UPDATE SET"
        " fired_count = schedule_state.fired_count + excluded.fired_count,"
        " last_fire_at = CASE WHEN schedule_state.last_fire_at IS NULL"
        " OR schedule_state.last_fire_at < excluded.last_fire_at"
        " THEN excluded.last_fire_at ELSE schedule_state.last_fire_at END",
        {"j": job_id, "k": key, "c": fired, "t": last_fire_at},
    )


def insert_schedule_firing(tx: Tx, job_id: int, key: str, fire_at: float, now: float) -> bool:
    """Claim one firing; False if some scheduler already recorded it."""
    return tx.run(
        "INSERT INTO schedule_firings (job_id, schedule_key, fire_at, created_at)"
        " VALUES (:j, :k, :f, :t) ON CONFLICT (job_id, schedule_key, fire_at) DO NOTHING",
        {"j": job_id, "k": key, "f": fire_at, "t": now},
    ) == 1


def set_firing_outcome(tx: Tx, job_id: int, key: str, fire_at: float, run_id: int | None,
                       note: str | None) -> None:
    tx.run(
        "UPDATE schedule_firings SET run_id = :r, note = :n"
        " WHERE job_id = :j AND schedule_key = :k AND fire_at = :f",
        {"r": run_id, "n": note, "j": job_id, "k": key, "f": fire_at},
    )


def active_runs(tx: Tx, job_id: int) -> dict[str, int]:
    """Top-level runs of a job that have not ended, counted by state."""
    rows = tx.all(
        "SELECT state, COUNT(*) FROM runs WHERE job_id = :j AND parent_task_run_id IS NULL"
        " AND state IN ('queued', 'running', 'stopping') GROUP BY state", {"j": job_id})
    return {str(s): int(n) for s, n in rows}


def startable_queued(tx: Tx, job_id: int | None = None) -> list[Row]:
    """The oldest queued run of each job (or of one job) that has no run in progress."""
    scope = "" if job_id is None else " AND q.job_id = :j"
    return tx.all(
        "SELECT MIN(q.id) FROM runs q WHERE q.state = 'queued'"
        f" AND q.parent_task_run_id IS NULL{scope} AND NOT EXISTS (SELECT 1 FROM runs a"
        " WHERE a.job_id = q.job_id AND a.state IN ('running', 'stopping')"
        " AND a.parent_task_run_id IS NULL) GROUP BY q.job_id",
        {"j": job_id},
    )


def start_queued(tx: Tx, run_id: int, now: float) -> bool:
    if tx.run("UPDATE runs SET state = 'running', started_at = :t WHERE id = :r"
              " AND state = 'queued'", {"t": now, "r": run_id}) == 0:
        return False
    tx.run("INSERT INTO events (at, run_id, task_run_id, state, detail)"
           " VALUES (:t, :r, NULL, 'running', 'started after the run before it ended')",
           {"t": now, "r": run_id})
    return True


# -- cross-job triggers ---------------------------------------------------------------------
def job_ids(tx: Tx, names: tuple[str, ...]) -> dict[str, int]:
    if not names:
        return {}
    marks = ", ".join(f":n{i}" for i in range(len(names)))
    params: dict[str, Any] = {f"n{i}": n for i, n in enumerate(names)}
    return {str(n): int(i) for i, n in tx.all(
        f"SELECT id, name FROM jobs WHERE name IN ({marks})", params)}


def latest_finished_run(tx: Tx, job_id: int) -> Row | None:
    """(id, state, finished_at) of the job's most recently ended top-level run."""
    return tx.one(
        "SELECT id, state, finished_at FROM runs WHERE job_id = :j"
        " AND parent_task_run_id IS NULL AND state IN ('succeeded', 'failed', 'cancelled')"
        " ORDER BY finished_at DESC, id DESC LIMIT 1", {"j": job_id})


def last_trigger_firing(tx: Tx, job_id: int, index: int) -> str | None:
    value = tx.scalar(
        "SELECT upstream_key FROM trigger_firings WHERE job_id = :j AND trigger_index = :i"
        " ORDER BY created_at DESC LIMIT 1", {"j": job_id, "i": index})
    return None if value is None else str(value)


def insert_trigger_firing(tx: Tx, job_id: int, index: int, key: str, now: float) -> bool:
    return tx.run(
        "INSERT INTO trigger_firings (job_id, trigger_index, upstream_key, created_at)"
        " VALUES (:j, :i, :k, :t) ON CONFLICT (job_id, trigger_index, upstream_key) DO NOTHING",
        {"j": job_id, "i": index, "k": key, "t": now},
    ) == 1


def set_trigger_run(tx: Tx, job_id: int, index: int, key: str, run_id: int) -> None:
    tx.run("UPDATE trigger_firings SET run_id = :r WHERE job_id = :j AND trigger_index = :i"
           " AND upstream_key = :k", {"r": run_id, "j": job_id, "i": index, "k": key})
