"""Deadlines against a settable clock and a deterministic history: a run that cannot make it
is warned once before its deadline and then missed; one that can make it gets neither."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks.replay import Clock, Replay

from taskplan import shapes
from taskplan.engine import Claim, Engine
from taskplan.scheduler import Scheduler
from taskplan.spec import load_job_text
from taskplan.store import reports
from taskplan.store.db import Store

T0 = 1_800_000_000.0
SECONDS = {"extract": 40.0, "load": 30.0, "report": 10.0}  # 80 s in a row


def _job(within: str) -> str:
    return f"""
        job: nightly
        deadline: {{within: {within}}}
        tasks:
          extract: {{shell: "true"}}
          load: {{shell: "true", depends_on: extract}}
          report: {{shell: "true", depends_on: load}}
    """


def _setup(store: Store, text: str) -> tuple[Engine, Clock, int, Replay]:
    clock = Clock(T0)
    engine = Engine(store, clock=clock)
    spec = load_job_text(textwrap.dedent(text), "job.yaml", ".")
    version_id, _, _ = engine.apply(spec)

    def attempt(claim: Claim) -> tuple[float, bool]:
        return SECONDS[claim.task], True

    replay = Replay(engine, clock, 2, attempt)
    for _ in range(2):  # the history: 80 s every time
        run_id = engine.create_run(version_id)
        replay.start()
        replay.finish(run_id)
    return engine, clock, version_id, replay


def _deadline_events(store: Store, run_id: int) -> list[tuple[float, str, dict[str, object]]]:
    with store.read() as tx:
        rows = tx.all("SELECT at, state, detail FROM events WHERE run_id = :r AND state LIKE"
                      " 'deadline%' ORDER BY id", {"r": run_id})
    return [(float(a), str(s), json.loads(d)) for a, s, d in rows]


def _standing(store: Store, run_id: int, now: float) -> dict[str, object] | None:
    with store.read() as tx:
        info = reports.run_info(tx, run_id)
    assert info is not None
    return shapes.run_deadline(info, now)


def test_a_run_that_cannot_make_it_is_at_risk_then_missed(store: Store) -> None:
    engine, clock, version_id, replay = _setup(store, _job("60s"))
    scheduler = Scheduler(engine, clock=clock)
    assert scheduler.check_deadlines() == []  # nothing to watch: next look in 15 s...
    run_id = engine.create_run(version_id)
    start = clock.t
    replay.start()
    assert _standing(store, run_id, clock.t) == {"at": shapes.iso(start + 60), "state": "on_track"}

    replay.advance_to(start + 5)
    assert scheduler.check_deadlines() == [(run_id, "at_risk")]  # ...but a new run is judged now
    assert scheduler.check_deadlines() == []  # once per run
    assert scheduler.deadlines.next_at == start + 5 + 15  # every 15 s, or at a deadline
    events = _deadline_events(store, run_id)
    assert [(at - start, state) for at, state, _ in events] == [(5, "deadline_at_risk")]
    assert events[0][2] == {"deadline_at": shapes.iso(start + 60),
                            "predicted_finish_at": shapes.iso(start + 80),
                            "critical_path": ["extract", "load", "report"]}
    assert _standing(store, run_id, clock.t) == {"at": shapes.iso(start + 60), "state": "at_risk"}

    replay.advance_to(start + 50)
    assert scheduler.check_deadlines() == []
    assert scheduler.deadlines.next_at == start + 60  # it wakes for the deadline itself
    replay.advance_to(start + 59.9)
    assert scheduler.check_deadlines() == []
    replay.advance_to(start + 60)
    assert scheduler.check_deadlines() == [(run_id, "missed")]
    replay.advance_to(start + 70)
    assert scheduler.check_deadlines() == []
    events = _deadline_events(store, run_id)
    assert [(at - start, state) for at, state, _ in events] == [
        (5, "deadline_at_risk"), (60, "deadline_missed")]
    assert events[1][2]["critical_path"] == ["load", "report"]
    replay.finish(run_id)
    assert _standing(store, run_id, clock.t) == {"at": shapes.iso(start + 60), "state": "missed"}


def test_a_run_that_can_make_it_gets_neither(store: Store) -> None:
    engine, clock, version_id, replay = _setup(store, _job("90s"))
    scheduler = Scheduler(engine, clock=clock)
    run_id = engine.create_run(version_id)
    start = clock.t
    replay.start()
    for offset in (0, 20, 45, 75, 79):
        replay.advance_to(start + offset)
        assert scheduler.check_deadlines() == []
    replay.finish(run_id)
    assert scheduler.check_deadlines() == []
    assert _deadline_events(store, run_id) == []
    assert _standing(store, run_id, clock.t) == {"at": shapes.iso(start + 90), "state": "met"}


def test_a_deadline_counted_from_the_start_waits_for_it(store: Store) -> None:
    engine, clock, version_id, _ = _setup(store, _job("100s, of: start"))
    run_id = engine.create_run(version_id, queued=True)
    assert _standing(store, run_id, clock.t) == {"at": None, "state": "pending"}
    clock.t += 50
    with store.tx() as tx:
        tx.run("UPDATE runs SET state = 'running', started_at = :t WHERE id = :r",
               {"t": clock.t, "r": run_id})
    scheduler = Scheduler(engine, clock=clock)
    assert scheduler.check_deadlines() == []
    assert _standing(store, run_id, clock.t) == {"at": shapes.iso(clock.t + 100),
                                                 "state": "on_track"}


def test_a_queued_run_cancelled_before_it_started_has_not_met_its_deadline(
        store: Store) -> None:
    engine, clock, version_id, _ = _setup(store, _job("100s, of: start"))
    run_id = engine.create_run(version_id, queued=True)
    engine.cancel_run(run_id)
    assert engine.run_state(run_id) == "cancelled"
    assert _standing(store, run_id, clock.t) == {"at": None, "state": "not_met"}  # not pending


def test_a_queued_run_gets_its_start_deadline_when_it_starts_with_no_checker(
        store: Store) -> None:
    """No scheduler looks while the queued run starts and ends: its deadline is fixed by the
    transaction that starts it (it used to stay `pending` for good)."""
    engine, clock, version_id, replay = _setup(store, _job("100s, of: start"))
    first = engine.create_run(version_id)
    second = engine.create_run(version_id, queued=True)
    replay.start()
    started = replay.finish(first)  # the end of the first starts the second
    with store.read() as tx:
        assert tx.scalar("SELECT started_at FROM runs WHERE id = :r", {"r": second}) == started
    assert _standing(store, second, clock.t) == {"at": shapes.iso(started + 100),
                                                 "state": "on_track"}
    replay.finish(second)  # 80 s
    assert _standing(store, second, clock.t) == {"at": shapes.iso(started + 100),
                                                 "state": "met"}


def test_a_job_without_deadline_has_none(store: Store) -> None:
    engine = Engine(store)
    spec = load_job_text("job: plain\ntasks:\n  a: {shell: 'true'}\n", "job.yaml", ".")
    version_id, _, _ = engine.apply(spec)
    run_id = engine.create_run(version_id)
    assert _standing(store, run_id, 0.0) is None
    with store.read() as tx:
        info = reports.run_info(tx, run_id)
    assert info is not None and "deadline" not in shapes.run_summary(info)


@pytest.mark.parametrize(("fired", "expected"), [
    ("2026-03-28T02:10:00+01:00", "2026-03-28T06:00:00+01:00"),  # later the same day
    ("2026-03-28T07:00:00+01:00", "2026-03-29T06:00:00+02:00"),  # the next day, after DST
    ("2026-03-29T06:00:00+02:00", "2026-03-29T06:00:00+02:00"),  # at the very instant
])
def test_finish_by_is_the_next_wall_time_in_the_zone(fired: str, expected: str) -> None:
    from datetime import datetime, time

    from taskplan.forecast.deadlines import deadline_at
    from taskplan.model import Deadline

    deadline = Deadline(finish_by=time(6, 0), timezone="Europe/Paris")
    at = deadline_at(deadline, "UTC", datetime.fromisoformat(fired).timestamp(), None)
    assert at == datetime.fromisoformat(expected).timestamp()


@pytest.mark.parametrize(("fired", "finish_by", "expected"), [
    # 2026-03-29: Berlin's clocks jump from 02:00 to 03:00; 02:30 never shows, and the
    # deadline falls just after the gap, when the clocks first read past it.
    ("2026-03-29T01:00:00+01:00", "02:30", "2026-03-29T03:00:00+02:00"),
    ("2026-03-29T01:00:00+01:00", "02:00", "2026-03-29T03:00:00+02:00"),
    ("2026-03-29T01:00:00+01:00", "03:00", "2026-03-29T03:00:00+02:00"),
    # 2026-10-25: 02:00-02:59 shows twice; the first occurrence at or after the firing.
    ("2026-10-25T01:00:00+02:00", "02:50", "2026-10-25T02:50:00+02:00"),
    ("2026-10-25T02:55:00+02:00", "02:50", "2026-10-25T02:50:00+01:00"),
    ("2026-10-25T02:45:00+01:00", "02:50", "2026-10-25T02:50:00+01:00"),
    ("2026-10-25T02:55:00+01:00", "02:50", "2026-10-26T02:50:00+01:00"),
])
def test_finish_by_across_a_dst_change(fired: str, finish_by: str, expected: str) -> None:
    from datetime import datetime, time

    from taskplan.forecast.deadlines import deadline_at
    from taskplan.model import Deadline

    deadline = Deadline(finish_by=time.fromisoformat(finish_by), timezone="Europe/Berlin")
    at = deadline_at(deadline, "UTC", datetime.fromisoformat(fired).timestamp(), None)
    assert at == datetime.fromisoformat(expected).timestamp()
