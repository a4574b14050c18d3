"""Imported pgAgent schedules fire when pgAgent's own `pga_next_schedule()` says, or differ only
where pgAgent is wrong (docs/migrating.md lists each case and the test below that pins it).

The big test writes a few hundred seeded random schedules into pgAgent's catalog, imports them
with `taskplan import pgagent`, takes each one's next 20 firings from taskplan (the code path of
`taskplan next`) and asks the server's pgAgent function for the firing after each previous one.
`pgagent_model` (pgAgent's function line by line, with a switch per known mistake) first has to
reproduce the server's answer exactly; a difference with taskplan is then accepted only if
switching on pgAgent's corrections gives taskplan's answer, or the firing is on a day the clocks
change (pgAgent and taskplan read DST differently; see the pinned cases).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pgagent_model as pm
import pytest
from pgagent_db import ZONE, add_job, bits, pga_next, pgagent_database

from taskplan.importers.documents import write_all
from taskplan.importers.pgagent import convert
from taskplan.model import JobSpec
from taskplan.spec import job_from_definition
from taskplan.store.pgagent_catalog import read_catalog
from taskplan.timing import next_firings

TZ = ZoneInfo(ZONE)
T0 = datetime(2040, 1, 1, 0, 0, tzinfo=TZ)  # later than the server's now(), as the method needs
N_SCHEDULES = 240
N_FIRINGS = 20
SEED = 20261201


@pytest.fixture(scope="module")
def pga() -> Iterator[Any]:
    import psycopg

    with pgagent_database() as url, psycopg.connect(url, autocommit=True) as conn:
        # Inserted rows as pgAgent's UI writes them, but without its triggers: they compute each
        # job's next run from the real now(), which raises for some schedules (a pgAgent bug
        # pinned below) and is not what is compared here.
        conn.execute("SET session_replication_role = replica")
        yield url, conn


def _subset(rng: random.Random, pool: list[int], k: int) -> list[int]:
    return rng.sample(pool, min(k, len(pool)))


def random_schedule(rng: random.Random) -> dict[str, Any]:
    """A pgAgent schedule with random arrays, bounds and (later) exceptions."""
    sc: dict[str, Any] = {"name": "random"}
    if rng.random() > 0.1:
        sc["minutes"] = bits(60, _subset(rng, list(range(60)), rng.randint(1, 4)))
    if rng.random() > 0.35:
        sc["hours"] = bits(24, _subset(rng, list(range(24)), rng.randint(1, 4)))
    if rng.random() > 0.55:
        sc["weekdays"] = bits(7, _subset(rng, list(range(7)), rng.randint(1, 3)))
    if rng.random() > 0.5:
        pool = list(range(1, 33)) + [28, 29, 30, 31, 32] * 3
        sc["monthdays"] = bits(32, set(_subset(rng, pool, rng.randint(1, 3))), base=1)
    if rng.random() > 0.6:
        sc["months"] = bits(12, _subset(rng, list(range(1, 13)), rng.randint(1, 5)), base=1)
    sc["start"] = (T0 + timedelta(minutes=rng.randint(-400_000, 500_000), seconds=rng.randint(
        0, 59))).astimezone(UTC)
    if rng.random() < 0.4:
        sc["end"] = sc["start"] + timedelta(minutes=rng.randint(600, 1_200_000))
    return sc


def _import(url: str, out: Path | None) -> dict[str, JobSpec]:
    """origin -> JobSpec of every job imported: written to `out` as `taskplan import pgagent`
    does, or (for drafts) built from the documents without the round trip through YAML."""
    items = convert(read_catalog(url), ZONE)
    if out is None:
        return {i.origin: job_from_definition(i.document, "", ".") for i in items
                if i.document is not None}
    write_all(items, out)
    return {item.origin: item.spec for item in items if item.spec is not None}


def _taskplan_firings(spec: JobSpec | None) -> list[datetime]:
    if spec is None or not spec.schedules:
        return []
    return [at for at, _ in next_firings(spec, T0, N_FIRINGS)]


def _sched(row: dict[str, Any], exceptions: list[tuple[date | None, time | None]]) -> pm.Sched:
    return pm.Sched(
        start=row["start"], end=row.get("end"), minutes=tuple(row.get("minutes", bits(60, []))),
        hours=tuple(row.get("hours", bits(24, []))),
        weekdays=tuple(row.get("weekdays", bits(7, []))),
        monthdays=tuple(row.get("monthdays", bits(32, []))),
        months=tuple(row.get("months", bits(12, []))), exceptions=tuple(exceptions))


def _add_exceptions(rng: random.Random, sc: dict[str, Any], firings: list[datetime],
                    used: set[tuple[date, time]]) -> list[tuple[date | None, time | None]]:
    """Exceptions that hit some of the schedule's firings: a day, a time of every day (only when
    the schedule has other times that day), or one firing."""
    out: list[tuple[date | None, time | None]] = []
    times = {f.astimezone(TZ).time() for f in firings}
    for _ in range(rng.randint(1, 3)):
        if not firings:
            break
        hit = rng.choice(firings).astimezone(TZ)
        kind = rng.choice(["date", "time", "both"])
        if kind == "time" and len(times) < 2:
            kind = "both"
        pair = ((hit.date(), None) if kind == "date" else (None, hit.time()) if kind == "time"
                else (hit.date(), hit.time()))
        if pair[0] is not None and pair[1] is not None:
            if (pair[0], pair[1]) in used:
                continue  # pgAgent allows a (date, time) once in its whole catalog
            used.add((pair[0], pair[1]))
        if pair not in out:
            out.append(pair)
    sc["exceptions"] = out
    return out


@pytest.mark.slow
def test_random_schedules_fire_as_pgagent_says_but_where_pgagent_is_wrong(
        pga: Any, tmp_path: Path) -> None:
    url, conn = pga
    rng = random.Random(SEED)
    used: set[tuple[date, time]] = set()
    rows: dict[str, tuple[int, dict[str, Any]]] = {}
    # Draw schedules; keep those whose 20 firings (before exceptions) fall within 30 years, so
    # that pgAgent's day-by-day search stays quick.
    drafts = [random_schedule(rng) for _ in range(N_SCHEDULES * 2)]
    for i, sc in enumerate(drafts):
        name = f"random {i:04d}"
        jobid, [jscid] = add_job(conn, name, steps=[{"name": "a", "code": "true"}],
                                 schedules=[sc])
        rows[f"pgAgent job {jobid} {name!r}, imported by taskplan import pgagent"] = (jscid, sc)
    specs = _import(url, None)
    kept: list[str] = []
    never_kept = 0
    for origin, (jscid, sc) in rows.items():
        found = _taskplan_firings(specs.get(origin))
        never = not found
        too_rare = len(found) == N_FIRINGS and found[-1] > T0 + timedelta(days=30 * 365)
        if too_rare or (never and never_kept >= 10):
            continue  # too rare for pgAgent's search, or enough never-firing ones kept
        never_kept += never
        if len(kept) >= N_SCHEDULES:
            break
        kept.append(origin)
        if found and rng.random() < 0.35:
            for d, t in _add_exceptions(rng, sc, found, used):
                conn.execute("INSERT INTO pgagent.pga_exception (jexscid, jexdate, jextime)"
                             " VALUES (%s, %s, %s)", (jscid, d, t))
    assert len(kept) == N_SCHEDULES
    conn.execute("DELETE FROM pgagent.pga_job WHERE jobid <> ALL(%s)",
                 ([int(o.split()[2]) for o in kept],))
    specs = _import(url, tmp_path / "jobs")

    # taskplan's firings, then pgAgent's firing after each previous one, in one statement.
    ours: dict[str, list[datetime]] = {o: _taskplan_firings(specs.get(o)) for o in kept}
    calls: list[tuple[str, int, datetime, datetime | None]] = []
    for origin in kept:
        jscid, _ = rows[origin]
        found = ours[origin]
        previous = [T0, *found]
        for k in range(min(len(found) + 1, N_FIRINGS)):
            calls.append((origin, jscid, previous[k], found[k] if k < len(found) else None))
    answers = pga_next(conn, [(jscid, after) for _, jscid, after, _ in calls])

    dst = pm.dst_days(TZ, T0.date() - timedelta(days=400), T0.date() + timedelta(days=40 * 366))
    verdicts: Counter[str] = Counter()
    unexplained: list[str] = []
    differing: set[str] = set()
    for (origin, _, after, ours_at), (theirs, err) in zip(calls, answers, strict=True):
        sched = _sched(rows[origin][1], rows[origin][1].get("exceptions", []))
        try:
            model: datetime | str | None = pm.next_schedule(sched, after, TZ)
        except pm.PgAgentError as exc:
            model = f"error: {exc}"
        real: datetime | str | None = f"error: {err}" if err else theirs
        if err and isinstance(model, str):
            real = model  # both raise (the messages differ in wording only)
        assert model == real, f"{origin}: after {after}: model {model}, pgAgent {real}"
        if real == ours_at:
            verdicts["same"] += 1
            continue
        differing.add(origin)
        why = _explain(sched, after, ours_at, real, dst)
        if why is None:
            unexplained.append(f"{origin} after {after}: taskplan {ours_at}, pgAgent {real}")
        else:
            verdicts[why] += 1
    assert not unexplained, "\n".join(unexplained[:20])
    # The comparison found both agreement and each kind of pgAgent mistake it can meet.
    assert verdicts["same"] > 2000
    assert {pm.ROLLOVER, pm.LAST_DAY, pm.SHORT_MONTH} <= set(verdicts)
    print(f"\n{len(kept)} schedules, {len(calls)} firings compared: {dict(verdicts)};"
          f" {len(differing)} schedules with a difference")


def _explain(sched: pm.Sched, after: datetime, ours: datetime | None,
             real: datetime | str | None, dst: set[date]) -> str | None:
    """The documented case a difference belongs to, or None."""
    if ours is not None and ours.astimezone(TZ).date() in dst:
        return "dst"
    if isinstance(real, datetime) and real.astimezone(TZ).date() in dst:
        return "dst"
    try:
        fixed = pm.next_schedule(sched, after, TZ, pm.FIXES)
    except pm.PgAgentError:
        return None
    if fixed != ours:
        return "dst" if fixed is not None and fixed.astimezone(TZ).date() in dst else None
    blamed = []
    for fix in pm.FIXES:
        try:
            if pm.next_schedule(sched, after, TZ, [fix]) != real:
                blamed.append(fix)
        except pm.PgAgentError:
            continue
    return "+".join(blamed) or "combined"


# -- each case where pgAgent is wrong, pinned on the real function (docs/migrating.md) --------
def _one(pga: Any, tmp_path: Path, name: str, sc: dict[str, Any], after: datetime,
         n: int = 1) -> tuple[list[datetime | str], list[datetime]]:
    """pgAgent's next `n` firings after `after` (an error as its text) and taskplan's."""
    url, conn = pga
    _, [jscid] = add_job(conn, name, steps=[{"name": "a", "code": "true"}],
                         schedules=[{"start": T0 - timedelta(days=3650), **sc}])
    theirs: list[datetime | str] = []
    at = after
    for _ in range(n):
        [(got, err)] = pga_next(conn, [(jscid, at)])
        if err or got is None:
            theirs.append(f"error: {err}" if err else "none")
            break
        theirs.append(got.astimezone(TZ))
        at = got
    items = [i for i in convert(read_catalog(url), ZONE) if f"{name!r}" in i.origin]
    write_all(items, tmp_path)
    spec = items[0].spec
    assert spec is not None
    ours = [at.astimezone(TZ) for at, _ in next_firings(spec, after, n)]
    return theirs, ours


def _local(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)  # type: ignore[misc]


def _last_sunday(year: int, month: int) -> int:
    last = (date(year, month + 1, 1) - timedelta(days=1))
    return last.day - (last.weekday() + 1) % 7


def test_pgagent_skips_earlier_minutes_after_rolling_over_to_a_new_hour(
        pga: Any, tmp_path: Path) -> None:
    # 14:10 and 14:50 daily; asked at 11:44 (e.g. a run that ended then), pgAgent searches the
    # minutes of hour 14 from 44 on.
    sc = {"hours": bits(24, [14]), "minutes": bits(60, [10, 50])}
    theirs, ours = _one(pga, tmp_path, "rollover", sc, _local(2040, 1, 10, 11, 44))
    assert theirs == [_local(2040, 1, 10, 14, 50)]
    assert ours == [_local(2040, 1, 10, 14, 10)]


def test_pgagent_misses_the_last_day_when_other_month_days_are_set(
        pga: Any, tmp_path: Path) -> None:
    sc = {"hours": bits(24, [6]), "minutes": bits(60, [0]),
          "monthdays": bits(32, [15, 32], base=1)}
    theirs, ours = _one(pga, tmp_path, "last day", sc, _local(2040, 1, 16, 0, 0), n=2)
    assert theirs == [_local(2040, 2, 15, 6, 0), _local(2040, 3, 15, 6, 0)]
    assert ours == [_local(2040, 1, 31, 6, 0), _local(2040, 2, 15, 6, 0)]


def test_pgagent_raises_on_a_day_the_month_does_not_have(pga: Any, tmp_path: Path) -> None:
    sc = {"hours": bits(24, [6]), "minutes": bits(60, [0]), "monthdays": bits(32, [31], base=1)}
    theirs, ours = _one(pga, tmp_path, "short month", sc, _local(2040, 4, 1, 0, 0))
    assert len(theirs) == 1 and "out of range" in str(theirs[0])
    assert ours == [_local(2040, 5, 31, 6, 0)]


def test_pgagent_fires_every_other_minute_when_nothing_is_set(pga: Any, tmp_path: Path) -> None:
    theirs, ours = _one(pga, tmp_path, "every minute", {}, _local(2040, 1, 1, 10, 0), n=3)
    assert theirs == [_local(2040, 1, 1, 10, 2), _local(2040, 1, 1, 10, 4),
                      _local(2040, 1, 1, 10, 6)]
    assert ours == [_local(2040, 1, 1, 10, 1), _local(2040, 1, 1, 10, 2),
                    _local(2040, 1, 1, 10, 3)]


def test_dst_gap_pgagent_skips_the_day_taskplan_fires_after_the_gap(
        pga: Any, tmp_path: Path) -> None:
    day = _last_sunday(2040, 3)  # 02:00-03:00 does not exist in Paris that day
    sc = {"hours": bits(24, [2]), "minutes": bits(60, [30])}
    theirs, ours = _one(pga, tmp_path, "dst gap", sc, _local(2040, 3, day - 1, 12, 0), n=2)
    assert theirs == [_local(2040, 3, day + 1, 2, 30), _local(2040, 3, day + 2, 2, 30)]
    assert ours == [_local(2040, 3, day, 3, 30), _local(2040, 3, day + 1, 2, 30)]
    assert ours[0].utcoffset() == timedelta(hours=2)


def test_dst_fall_back_pgagent_fires_in_the_second_copy_of_the_hour(
        pga: Any, tmp_path: Path) -> None:
    day = _last_sunday(2040, 10)  # 02:00-03:00 happens twice in Paris that day
    sc = {"hours": bits(24, [2]), "minutes": bits(60, [30])}
    theirs, ours = _one(pga, tmp_path, "dst repeat", sc, _local(2040, 10, day - 1, 12, 0))
    assert [t.utcoffset() for t in theirs if isinstance(t, datetime)] == [timedelta(hours=1)]
    assert [t.utcoffset() for t in ours] == [timedelta(hours=2)]  # the first 02:30
    # An every-hour schedule follows real time in taskplan: both 02:15 fire; pgAgent: one.
    hourly = {"minutes": bits(60, [15])}
    theirs, ours = _one(pga, tmp_path, "dst hourly", hourly, _local(2040, 10, day, 1, 0), n=3)
    assert [(t.hour, t.utcoffset()) for t in ours] == [
        (1, timedelta(hours=2)), (2, timedelta(hours=2)), (2, timedelta(hours=1))]
    assert [(t.hour, t.utcoffset()) for t in theirs if isinstance(t, datetime)] == [
        (1, timedelta(hours=2)), (2, timedelta(hours=1)), (3, timedelta(hours=1))]


def test_taskplan_next_prints_the_imported_firings(pga: Any, tmp_path: Path) -> None:
    """The CLI end to end: import pgagent, then taskplan next on the written file."""
    url, conn = pga
    add_job(conn, "cli check", steps=[{"name": "a", "code": "true"}], schedules=[{
        "start": T0, "hours": bits(24, [6, 18]), "minutes": bits(60, [0]),
        "weekdays": bits(7, [1, 3, 5]), "exceptions": [(date(2040, 1, 4), None)]}])
    out = tmp_path / "jobs"
    run = [str(Path(sys.executable).parent / "taskplan"), "--db",
           f"sqlite:///{tmp_path / 'tp.db'}"]
    imported = subprocess.run([*run, "import", "pgagent", "--from", url, "--out", str(out),
                               "--job", "cli check", "--json"],
                              capture_output=True, text=True, timeout=60)
    assert imported.returncode == 0, imported.stderr
    [row] = json.loads(imported.stdout)
    assert row["job"] == "cli_check" and row["not_expressed"] == []
    shown = subprocess.run([*run, "next", row["file"], "-n", "3", "--after", "2040-01-01",
                            "--json"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    # Mon/Wed/Fri at 06:00 and 18:00, except Wednesday 4 January 2040
    assert [f["at"] for f in json.loads(shown.stdout)] == [
        "2040-01-02T06:00:00+01:00", "2040-01-02T18:00:00+01:00", "2040-01-06T06:00:00+01:00"]


def test_a_schedule_ending_at_its_start_fires_once_as_in_pgagent(
        pga: Any, tmp_path: Path) -> None:
    # pgAdmin's way of running a job once: the same start and end. pgAgent searches from the
    # start truncated to the minute, so an end within the start's minute still allows it.
    at = _local(2040, 2, 1, 9, 30)
    once = {"hours": bits(24, [9]), "minutes": bits(60, [30]), "start": at, "end": at}
    theirs, ours = _one(pga, tmp_path, "once", once, at - timedelta(days=1), n=2)
    assert theirs == [at, "none"] and ours == [at]
    late = {**once, "start": at + timedelta(seconds=30)}
    theirs, ours = _one(pga, tmp_path, "once late", late, at - timedelta(days=1), n=2)
    assert theirs == [at, "none"] and ours == [at]
    # an end before the start's minute: never
    never = {**once, "end": at - timedelta(minutes=1)}
    theirs, ours = _one(pga, tmp_path, "never", never, at - timedelta(days=1))
    assert theirs == ["none"] and ours == []
