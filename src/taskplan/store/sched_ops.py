"""Named operations of the scheduler and of cross-job triggers: leader leases, schedule state,
firing rows (idempotent by primary key), queued runs.

Idempotence is by constraint: a firing is an INSERT ... ON CONFLICT DO NOTHING whose rowcount
says whether this transaction won; the run is created in the same transaction only if it did.
"""

from __future__ import annotations

from typing import Any

from taskplan.dataclass import dataclass
from taskplan.store.db import Tx

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
    row = tx.one(f"SELECT holder, until FROM leases WHERE name = :n{tx.dialect.for_update}",
                 {"n": name})
    if row is None:
        return False
    current, until = row
    return bool(current == holder and float(until) >= now)


def lease_free(tx: Tx, name: str, now: float) -> bool:
    """Is the lease `name` free to take (released, expired, or never taken)? A plain read."""
    until = tx.scalar("SELECT until FROM leases WHERE name = :n", {"n": name})
    return until is None or float(until) < now


def release_lease(tx: Tx, name: str, holder: str) -> None:
    tx.run("UPDATE leases SET until = 0 WHERE name = :n AND holder = :h",
           {"n": name, "h": holder})


# -- definitions ----------------------------------------------------------------------------
def definitions_mark(tx: Tx) -> tuple[int, float]:
    """Changes whenever a job is added or gets a new version (the scheduler's wake check)."""
    row = tx.one("SELECT COUNT(*), COALESCE(MAX(updated_at), 0) FROM jobs")
    assert row is not None
    count, latest = row
    return int(count), float(latest)


def job_of_version(tx: Tx, version_id: int) -> int:
    return int(tx.scalar("SELECT job_id FROM job_versions WHERE id = :v", {"v": version_id}))


@dataclass(frozen=True)
class CurrentJob:
    job_id: int
    name: str
    version_id: int  # its current version
    applied_at: float  # when that version was applied


def current_jobs(tx: Tx, *, triggers_only: bool = False) -> list[CurrentJob]:
    """Every job (not deleted) at its current version, by id. `triggers_only`: those whose
    definition may declare cross-job triggers, by a text match on the stored JSON (a superset:
    each is then read whole and checked), so that finding who waits for a run's job does not
    read and build every job's definition."""
    where = " WHERE v.definition LIKE '%\"triggers\"%'" if triggers_only else ""
    return [CurrentJob(int(j), str(n), int(v), float(t)) for j, n, v, t in tx.all(
        "SELECT j.id, j.name, v.id, v.created_at FROM jobs j"
        f" JOIN job_versions v ON v.id = j.current_version_id{where} ORDER BY j.id")]


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


def set_schedule_paused(tx: Tx, job_id: int, key: str, paused: bool, now: float) -> bool:
    """Pause or resume one schedule of a job; whether that changed anything."""
    if paused:
        return tx.run("INSERT INTO paused_schedules (job_id, schedule_key, paused_at)"
                      " VALUES (:j, :k, :t) ON CONFLICT DO NOTHING",
                      {"j": job_id, "k": key, "t": now}) == 1
    return tx.run("DELETE FROM paused_schedules WHERE job_id = :j AND schedule_key = :k",
                  {"j": job_id, "k": key}) == 1


def paused_schedules(tx: Tx, job_id: int) -> set[str]:
    return {str(k) for (k,) in tx.all(
        "SELECT schedule_key FROM paused_schedules WHERE job_id = :j", {"j": job_id})}


def paused_schedules_by_job(tx: Tx) -> dict[int, set[str]]:
    """Every job's schedules paused one at a time, by job id (one read for a listing)."""
    out: dict[int, set[str]] = {}
    for job_id, key in tx.all("SELECT job_id, schedule_key FROM paused_schedules"):
        out.setdefault(int(job_id), set()).add(str(key))
    return out


def job_paused(tx: Tx, job_id: int) -> bool:
    return bool(tx.scalar("SELECT paused FROM jobs WHERE id = :j", {"j": job_id}))


def lock_job(tx: Tx, job_id: int) -> None:
    """Serialise trigger checks of one dependent job across processes (PostgreSQL)."""
    tx.dialect.lock_row(tx, "jobs", job_id)


# -- schedules ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScheduleMark:
    """How far a schedule has fired."""

    fired_count: int  # runs it started (what `max_runs` counts)
    last_fire_at: float | None  # its latest firing, None before the first


def schedule_states(tx: Tx) -> dict[tuple[int, str], ScheduleMark]:
    """(job id, schedule key) -> its mark, for every schedule that fired."""
    return {(int(j), str(k)): ScheduleMark(int(c), None if t is None else float(t))
            for j, k, c, t in tx.all(
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
    """Top-level runs of a job that have not ended, counted by state (backfill runs aside:
    they take no part in on_overlap, their backfill's max_active paces them)."""
    rows = tx.all(
        "SELECT state, COUNT(*) FROM runs WHERE job_id = :j AND parent_task_run_id IS NULL"
        " AND state IN ('queued', 'running', 'stopping') AND trigger <> 'backfill'"
        " GROUP BY state", {"j": job_id})
    return {str(s): int(n) for s, n in rows}


def startable_queued(tx: Tx, job_id: int | None = None) -> list[int]:
    """The oldest queued run of each job (or of one job) that has no run in progress."""
    scope = "" if job_id is None else " AND q.job_id = :j"
    return [int(i) for (i,) in tx.all(
        "SELECT MIN(q.id) FROM runs q WHERE q.state = 'queued' AND q.trigger <> 'backfill'"
        f" AND q.parent_task_run_id IS NULL{scope} AND NOT EXISTS (SELECT 1 FROM runs a"
        " WHERE a.job_id = q.job_id AND a.state IN ('running', 'stopping')"
        " AND a.parent_task_run_id IS NULL AND a.trigger <> 'backfill') GROUP BY q.job_id",
        {"j": job_id},
    ) if i is not None]


def start_queued(tx: Tx, run_id: int, now: float) -> bool:
    if tx.run("UPDATE runs SET state = 'running', started_at = :t WHERE id = :r"
              " AND state = 'queued'", {"t": now, "r": run_id}) == 0:
        return False
    tx.run("INSERT INTO events (at, run_id, task_run_id, state, detail)"
           " VALUES (:t, :r, NULL, 'running', 'started after the run before it ended')",
           {"t": now, "r": run_id})
    return True


# -- backfills -----------------------------------------------------------------------------
def claim_backfill_firing(tx: Tx, job_id: int, key: str, fire_at: float, now: float) -> bool:
    """Take a firing for a backfill: a new firing row, or a recorded one that made no run
    (skipped while paused, or by on_overlap). False if a run exists for it already."""
    if insert_schedule_firing(tx, job_id, key, fire_at, now):
        return True
    return tx.run(
        "UPDATE schedule_firings SET note = NULL WHERE job_id = :j AND schedule_key = :k"
        " AND fire_at = :f AND run_id IS NULL", {"j": job_id, "k": key, "f": fire_at}) == 1


@dataclass(frozen=True)
class FiringOutcome:
    run_id: int | None  # the run it started, None if none
    note: str | None  # why not (skipped while paused, by on_overlap, ...)


def firing_outcomes(tx: Tx, job_id: int, lo: float, hi: float
                    ) -> dict[tuple[str, float], FiringOutcome]:
    """(schedule key, instant) -> outcome of the job's recorded firings in [lo, hi]."""
    return {(str(k), float(f)): FiringOutcome(None if r is None else int(r), n)
            for k, f, r, n in tx.all(
        "SELECT schedule_key, fire_at, run_id, note FROM schedule_firings WHERE job_id = :j"
        " AND fire_at >= :lo AND fire_at <= :hi", {"j": job_id, "lo": lo, "hi": hi})}


@dataclass(frozen=True)
class FiringRow:
    fire_at: float
    schedule: str
    run_id: int | None
    note: str | None
    run_state: str | None


def recent_firings(tx: Tx, job_id: int, limit: int) -> list[FiringRow]:
    """The job's recorded schedule firings, newest first, with their run's state."""
    rows = tx.all(
        "SELECT f.fire_at, f.schedule_key, f.run_id, f.note, r.state FROM schedule_firings f"
        " LEFT JOIN runs r ON r.id = f.run_id WHERE f.job_id = :j"
        " ORDER BY f.fire_at DESC, f.schedule_key LIMIT :n", {"j": job_id, "n": limit})
    return [FiringRow(float(a), str(k), None if r is None else int(r), n, st)
            for a, k, r, n, st in rows]


def insert_backfill(tx: Tx, job_id: int, from_at: float, to_at: float,
                    max_active: int | None, now: float) -> int:
    return int(tx.scalar(
        "INSERT INTO backfills (job_id, from_at, to_at, max_active, created_at)"
        " VALUES (:j, :f, :t, :m, :n) RETURNING id",
        {"j": job_id, "f": from_at, "t": to_at, "m": max_active, "n": now}))


def queued_backfills(tx: Tx, job_id: int | None = None) -> list[int]:
    """Backfills (of one job, or all) that have runs waiting for room."""
    scope = "" if job_id is None else " AND job_id = :j"
    return [int(r) for (r,) in tx.all(
        "SELECT DISTINCT trigger_ref FROM runs WHERE state = 'queued'"
        f" AND trigger = 'backfill'{scope}", {"j": job_id}) if r is not None]


def start_backfill_runs(tx: Tx, backfill_id: int, now: float) -> list[int]:
    """Start the earliest queued runs of a backfill while fewer than its max_active run."""
    # Locked where rows lock (PostgreSQL): serialise the count of one backfill's runs.
    row = tx.one(f"SELECT job_id, max_active FROM backfills WHERE id = :b"
                 f"{tx.dialect.for_update}", {"b": backfill_id})
    if row is None:
        return []
    job_id, max_active = row
    ref = {"j": job_id, "ref": str(backfill_id)}
    where = " FROM runs WHERE job_id = :j AND trigger = 'backfill' AND trigger_ref = :ref"
    room = 1_000_000 if max_active is None else int(max_active) - int(tx.scalar(
        "SELECT COUNT(*)" + where + " AND state IN ('running', 'stopping')", ref))
    if room <= 0:
        return []
    ids = [int(r) for (r,) in tx.all(
        "SELECT id" + where + " AND state = 'queued' ORDER BY fire_at, id LIMIT :n",
        {**ref, "n": room})]
    return [i for i in ids if start_queued(tx, i, now)]


# -- cross-job triggers ---------------------------------------------------------------------
def job_ids(tx: Tx, names: tuple[str, ...]) -> dict[str, tuple[int, bool]]:
    """name -> (id, live) of the jobs of these names; `live` is False for a deleted job."""
    if not names:
        return {}
    marks = ", ".join(f":n{i}" for i in range(len(names)))
    params: dict[str, Any] = {f"n{i}": n for i, n in enumerate(names)}
    return {str(n): (int(i), v is not None) for i, n, v in tx.all(
        f"SELECT id, name, current_version_id FROM jobs WHERE name IN ({marks})", params)}


@dataclass(frozen=True)
class FinishedRun:
    run_id: int
    state: str  # succeeded | failed | cancelled
    finished_at: float | None


def latest_finished_run(tx: Tx, job_id: int) -> FinishedRun | None:
    """The job's most recently ended top-level run."""
    row = tx.one(
        "SELECT id, state, finished_at FROM runs WHERE job_id = :j"
        " AND parent_task_run_id IS NULL AND state IN ('succeeded', 'failed', 'cancelled')"
        " ORDER BY finished_at DESC, id DESC LIMIT 1", {"j": job_id})
    if row is None:
        return None
    run_id, state, finished_at = row
    return FinishedRun(int(run_id), str(state), finished_at)


def last_trigger_firing(tx: Tx, job_id: int, index: int) -> str | None:
    """The set of upstream runs (`job:run_id,...`) of the trigger's latest firing."""
    value = tx.scalar(
        "SELECT COALESCE(upstream_runs, upstream_key) FROM trigger_firings WHERE job_id = :j"
        " AND trigger_index = :i ORDER BY created_at DESC LIMIT 1", {"j": job_id, "i": index})
    return None if value is None else str(value)


def insert_trigger_firing(tx: Tx, job_id: int, index: int, key: str, now: float,
                          upstream_runs: str | None = None) -> bool:
    """`upstream_runs`: the set itself, when `key` is its hash."""
    return tx.run(
        "INSERT INTO trigger_firings (job_id, trigger_index, upstream_key, created_at,"
        " upstream_runs) VALUES (:j, :i, :k, :t, :u)"
        " ON CONFLICT (job_id, trigger_index, upstream_key) DO NOTHING",
        {"j": job_id, "i": index, "k": key, "t": now, "u": upstream_runs},
    ) == 1


def set_trigger_run(tx: Tx, job_id: int, index: int, key: str, run_id: int) -> None:
    tx.run("UPDATE trigger_firings SET run_id = :r WHERE job_id = :j AND trigger_index = :i"
           " AND upstream_key = :k", {"r": run_id, "j": job_id, "i": index, "k": key})
