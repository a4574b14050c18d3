"""The scheduler with a business calendar, on a real store with an injected clock: the firing
due on a holiday is not made, the next one is, and a new calendar version is picked up by a
running scheduler without re-applying the job."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from taskplan.engine import Engine
from taskplan.scheduler import Scheduler
from taskplan.spec import load_definitions
from taskplan.store.db import Store

JOB = """job: pay
timezone: UTC
on_misfire: skip
schedules:
  - at: "06:00"
    calendar: closing
tasks:
  a: {shell: "true"}
"""
CALENDAR = "calendar: closing\nholidays: {country: GB, subdiv: ENG}\ndates: [%s]\n"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def apply(engine: Engine, folder: Path, listed: str, misfire: str = "skip") -> None:
    (folder / "cal.yaml").write_text(CALENDAR % listed)
    (folder / "job.yaml").write_text(JOB.replace("on_misfire: skip", f"on_misfire: {misfire}"))
    found = load_definitions([folder / "cal.yaml", folder / "job.yaml"])
    for cal in found.calendars:
        engine.apply_calendar(cal)
    for job in found.jobs:
        engine.apply(job)


def fire_at(s: Scheduler, clock: Clock, when: float) -> list[int]:
    clock.now = when
    assert s.try_lead()
    return s.fire_due().runs


def test_holidays_make_no_run_and_new_versions_apply_at_once(store: Store,
                                                             tmp_path: Path) -> None:
    clock = Clock(ts(2026, 12, 23, 12))
    engine = Engine(store, clock=clock)
    apply(engine, tmp_path, "2026-12-24")
    s = Scheduler(engine, clock=clock, holder="s1", lease=600.0)
    assert fire_at(s, clock, ts(2026, 12, 23, 13)) == []
    # 24 Dec (listed date), 25/26/28 (holidays) and 27 (Sunday): the next firing is the 29th.
    assert s.fire_due().next_due == ts(2026, 12, 29, 6)
    assert len(fire_at(s, clock, ts(2026, 12, 29, 6))) == 1
    # Close the 30th too: the running scheduler skips it without the job being re-applied.
    (tmp_path / "cal.yaml").write_text(CALENDAR % "2026-12-24, 2026-12-30")
    [cal] = load_definitions([tmp_path / "cal.yaml"]).calendars
    assert engine.apply_calendar(cal) == (2, True)
    assert fire_at(s, clock, ts(2026, 12, 29, 7)) == []
    assert s.fire_due().next_due == ts(2026, 12, 31, 6)
    with store.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM runs") == 1


def test_reopening_a_closed_day_does_not_make_up_its_past_firings(store: Store,
                                                                  tmp_path: Path) -> None:
    """A running scheduler skipped the 30th's 06:00 because the calendar closed that day; the
    calendar reopening it at 08:00 does not turn that firing into a missed one (run_all used to
    make it up, and say 'missed while no scheduler ran')."""
    clock = Clock(ts(2026, 12, 29, 12))
    engine = Engine(store, clock=clock)
    apply(engine, tmp_path, "2026-12-30", misfire="run_all")
    s = Scheduler(engine, clock=clock, holder="s1", lease=600.0)
    assert fire_at(s, clock, ts(2026, 12, 29, 13)) == []
    assert s.fire_due().next_due == ts(2026, 12, 31, 6)
    assert fire_at(s, clock, ts(2026, 12, 30, 7)) == []  # the 30th is closed
    (tmp_path / "cal.yaml").write_text(CALENDAR % "2026-12-24")
    [cal] = load_definitions([tmp_path / "cal.yaml"]).calendars
    clock.now = ts(2026, 12, 30, 8)
    assert engine.apply_calendar(cal) == (2, True)
    assert fire_at(s, clock, ts(2026, 12, 30, 8)) == []
    assert s.fire_due().next_due == ts(2026, 12, 31, 6)
    with store.read() as tx:
        assert tx.all("SELECT fire_at, note FROM schedule_firings") == []
    assert len(fire_at(s, clock, ts(2026, 12, 31, 6))) == 1


def test_a_firing_after_the_reopening_is_made_even_if_seen_late(store: Store,
                                                                 tmp_path: Path) -> None:
    """What the old version held back is settled up to the new version's apply time only: a
    firing of the reopened day after that time is the scheduler's to make (here late)."""
    clock = Clock(ts(2026, 12, 29, 12))
    engine = Engine(store, clock=clock)
    apply(engine, tmp_path, "2026-12-30, 2026-12-31", misfire="run_all")
    s = Scheduler(engine, clock=clock, holder="s1", lease=600.0)
    assert fire_at(s, clock, ts(2026, 12, 30, 7)) == []
    (tmp_path / "cal.yaml").write_text(CALENDAR % "2026-12-24")
    [cal] = load_definitions([tmp_path / "cal.yaml"]).calendars
    clock.now = ts(2026, 12, 31, 5, 59)
    engine.apply_calendar(cal)
    assert len(fire_at(s, clock, ts(2026, 12, 31, 6, 30))) == 1
    with store.read() as tx:
        assert [float(f) for (f,) in tx.all("SELECT fire_at FROM schedule_firings")] == [
            ts(2026, 12, 31, 6)]


def test_a_scheduler_that_leads_again_still_settles_a_reopened_day(store: Store,
                                                                   tmp_path: Path) -> None:
    """A scheduler that lost the lead and took it back with nothing changed meanwhile forgot
    which calendars it had seen, so the next reopening of a closed day was not settled: its
    held-back 06:00 looked missed and run_all made it up."""
    clock = Clock(ts(2026, 12, 29, 12))
    engine = Engine(store, clock=clock)
    apply(engine, tmp_path, "2026-12-30", misfire="run_all")
    s = Scheduler(engine, clock=clock, holder="s1", lease=600.0)
    assert fire_at(s, clock, ts(2026, 12, 30, 7)) == []  # the 30th is closed
    other = Scheduler(engine, clock=clock, holder="s2", lease=600.0)
    clock.now = ts(2026, 12, 30, 7, 20)  # s1's lease ran out: s2 takes the lead, then leaves
    assert other.try_lead() and not s.try_lead()
    other.release()
    assert fire_at(s, clock, ts(2026, 12, 30, 7, 30)) == []
    (tmp_path / "cal.yaml").write_text(CALENDAR % "2026-12-24")
    [cal] = load_definitions([tmp_path / "cal.yaml"]).calendars
    clock.now = ts(2026, 12, 30, 8)
    assert engine.apply_calendar(cal) == (2, True)
    assert fire_at(s, clock, ts(2026, 12, 30, 8)) == []
    with store.read() as tx:
        assert tx.all("SELECT fire_at, note FROM schedule_firings") == []
