"""Backfill on a real store with an injected clock: one run per firing in the range, exactly
once with the scheduler's firing rows, skipped firings taken over, max_active pacing."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from test_scheduler import T0, Clock, apply, fire, firings, job, scheduler

from taskplan.backfill import backfill
from taskplan.engine import Engine
from taskplan.errors import NotFoundError, UsageError
from taskplan.store.db import Store


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 100.5)


@pytest.fixture
def eng(store: Store, clock: Clock) -> Engine:
    return Engine(store, clock=clock)


def at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def backfill_runs(store: Store) -> list[tuple[int, str, float, str]]:
    with store.read() as tx:
        return [(int(i), str(s), float(f), str(p)) for i, s, f, p in tx.all(
            "SELECT id, state, fire_at, params FROM runs WHERE trigger = 'backfill'"
            " ORDER BY fire_at")]


def test_one_run_per_firing_and_nothing_new_the_second_time(eng: Engine, store: Store) -> None:
    apply(eng, job(every="10s"))
    out = backfill(eng, "tick", at(T0 + 10), at(T0 + 40))
    assert [f.at.timestamp() for f in out.firings] == [T0 + 10, T0 + 20, T0 + 30, T0 + 40]
    assert len(out.created) == 4 and out.backfill_id is not None
    made = backfill_runs(store)
    assert [f for _, _, f, _ in made] == [T0 + 10, T0 + 20, T0 + 30, T0 + 40]
    assert all(s == "running" and '"who":"sched"' in p for _, s, _, p in made)
    again = backfill(eng, "tick", at(T0 + 10), at(T0 + 40))
    assert again.created == [] and again.backfill_id is None
    assert [f.run_id for f in again.firings] == [r for r, _, _, _ in made]
    assert len(backfill_runs(store)) == 4
    dry = backfill(eng, "tick", at(T0 + 5), at(T0 + 55), dry_run=True)
    assert [(f.at.timestamp(), f.new) for f in dry.firings] == [
        (T0 + 10, False), (T0 + 20, False), (T0 + 30, False), (T0 + 40, False),
        (T0 + 50, True)]
    assert len(backfill_runs(store)) == 4


def test_the_range_is_capped_at_now_and_checked(eng: Engine) -> None:
    apply(eng, job(every="10s"))
    out = backfill(eng, "tick", at(T0 + 90), at(T0 + 500), dry_run=True)
    assert [f.at.timestamp() for f in out.firings] == [T0 + 90, T0 + 100]
    with pytest.raises(UsageError, match="after --to"):
        backfill(eng, "tick", at(T0 + 200), at(T0 + 300))
    with pytest.raises(NotFoundError, match="did you mean 'tick'"):
        backfill(eng, "tikc", at(T0), at(T0 + 10))
    with pytest.raises(UsageError, match="more than 10000 firings"):
        backfill(eng, "tick", at(T0 - 200_000), at(T0), dry_run=True)


def test_fired_firings_are_left_and_paused_ones_taken_over(eng: Engine, store: Store,
                                                           clock: Clock) -> None:
    clock.set(T0 + 0.5)
    apply(eng, job())
    s = scheduler(eng, clock)
    clock.set(T0 + 1)
    [scheduled] = fire(s).runs
    eng.pause_job("tick")
    clock.set(T0 + 2)
    fire(s)  # recorded, no run
    clock.set(T0 + 3.5)
    out = backfill(eng, "tick", at(T0 + 1), at(T0 + 3))
    assert [(f.at.timestamp(), f.new) for f in out.firings] == [
        (T0 + 1, False), (T0 + 2, True), (T0 + 3, True)]
    assert out.firings[0].run_id == scheduled
    with store.read() as tx:  # a scheduled run carries its instant too (run.fire_time)
        assert tx.scalar("SELECT fire_at FROM runs WHERE id = :r", {"r": scheduled}) == T0 + 1
    assert out.firings[1].note and "paused" in out.firings[1].note
    recorded = {f: (r, n) for f, r, n in firings(store)}
    assert recorded[T0 + 2][0] == out.firings[1].run_id and recorded[T0 + 2][1] == "backfill"
    # The scheduler never fires an instant a backfill made (the row exists).
    eng.resume_job("tick")
    clock.set(T0 + 4)
    assert len(fire(s).runs) == 1
    assert len({f for f, _, _ in firings(store)}) == 4


def test_max_active_queues_the_rest_and_each_end_starts_the_next(eng: Engine,
                                                                 store: Store) -> None:
    apply(eng, job(every="10s", overlap="skip"))
    backfill(eng, "tick", at(T0 + 10), at(T0 + 50), max_active=2)
    states = [s for _, s, _, _ in backfill_runs(store)]
    assert states == ["running", "running", "queued", "queued", "queued"]
    first = backfill_runs(store)[0][0]
    eng.cancel_run(first)  # any end frees a place, taken by the earliest queued firing
    states = [s for _, s, _, _ in backfill_runs(store)]
    assert states == ["cancelled", "running", "running", "queued", "queued"]
    # Backfill runs take no part in on_overlap: a manual run is not held back, and the
    # job's own queue does not start backfill runs.
    manual = eng.create_run(eng.current_version("tick"))
    assert eng.run_state(manual) == "running"


_HALF_HOURLY_BERLIN = """
job: dst
timezone: Europe/Berlin
schedules:
  - cron: "*/30 * * * *"
tasks:
  a: {shell: "true"}
"""


def test_bounds_in_the_repeated_autumn_hour_are_instants(eng: Engine, store: Store) -> None:
    # 2026-10-25 in Berlin shows 02:00-02:59 twice; a half-hourly schedule fires in both.
    # Aware datetimes sharing a zone compare by wall clock, fold ignored: the range must be
    # compared as instants, or the second 02:00 falls inside [02:30 CEST, 02:30 CEST].
    apply(eng, _HALF_HOURLY_BERLIN)
    berlin = ZoneInfo("Europe/Berlin")
    first = datetime(2026, 10, 25, 2, 30, tzinfo=berlin)  # 00:30Z
    second = first.replace(fold=1)  # 01:30Z
    for bound in (first, second):
        out = backfill(eng, "dst", bound, bound)
        assert [f.at.timestamp() for f in out.firings] == [bound.timestamp()]
        assert [f.new for f in out.firings] == [True]
    # Both runs exist now: a range over the whole night makes the three others, and calls
    # the two above already run (not "taken meanwhile").
    night = backfill(eng, "dst", datetime(2026, 10, 25, 2, 0, tzinfo=berlin),
                     datetime(2026, 10, 25, 2, 59, tzinfo=berlin, fold=1))
    assert [(f.at.astimezone(UTC).strftime("%H:%M"), f.new, f.run_id is not None)
            for f in night.firings] == [("00:00", True, True), ("00:30", False, True),
                                        ("01:00", True, True), ("01:30", False, True)]
    assert len(backfill_runs(store)) == 4
    with pytest.raises(UsageError, match="after --to"):
        backfill(eng, "dst", second, first)


class TickingClock(Clock):
    """Each reading is a millisecond after the one before, as time passes while a backfill
    works out its firings and creates its runs."""

    def __call__(self) -> float:
        with self._lock:
            self.now += 0.001
            return self.now


def test_a_backfilled_run_starts_no_earlier_than_it_was_created(store: Store) -> None:
    # runs --json showed the first runs of a backfill started a few ms before they were
    # created: they were started at the instant the backfill began, read before its firings.
    eng = Engine(store, clock=TickingClock(T0 + 100.5))
    apply(eng, job(every="10s"))
    backfill(eng, "tick", at(T0 + 10), at(T0 + 40))
    with store.read() as tx:
        rows = tx.all("SELECT id, created_at, started_at FROM runs WHERE trigger = 'backfill'")
    assert len(rows) == 4
    assert [i for i, created, started in rows if started < created] == []


def test_a_max_active_past_the_store_integers_starts_every_run(eng: Engine,
                                                                store: Store) -> None:
    # `backfill --max-active 3000000000` on PostgreSQL failed 'NumericValueOutOfRange:
    # integer out of range': the store keeps it in an integer column. A backfill makes at most
    # MAX_FIRINGS runs, so any bound past that is no bound at all.
    apply(eng, job(every="10s"))
    out = backfill(eng, "tick", at(T0 + 10), at(T0 + 40), max_active=3_000_000_000)
    assert len(out.created) == 4
    assert [s for _, s, _, _ in backfill_runs(store)] == ["running"] * 4
