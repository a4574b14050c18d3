"""The scheduler on a real store with an injected clock: firings, misfire and overlap policies,
max_runs, no backfill, exactly-once between two schedulers, lease takeover, queued runs."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from taskplan.engine import Engine
from taskplan.scheduler import RUN_ALL_CAP, FireResult, Scheduler
from taskplan.spec import load_job_text
from taskplan.store.db import Store

T0 = 1_800_000_000.0  # 2027-01-15T08:00:00Z, a whole second


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def set(self, now: float) -> None:
        with self._lock:
            self.now = now


def job(name: str = "tick", *, misfire: str = "run_once", overlap: str = "allow",
        every: str = "1s", extra: tuple[str, ...] = ("params: {who: sched}",)) -> str:
    lines = [f"job: {name}", f"on_misfire: {misfire}", f"on_overlap: {overlap}", "schedules:",
             f"  - every: {every}", *(f"    {x}" for x in extra),
             "tasks:", "  a:", '    shell: "true"']
    return "\n".join(lines) + "\n"


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 0.5)


@pytest.fixture
def eng(store: Store, clock: Clock) -> Engine:
    return Engine(store, clock=clock)


def apply(engine: Engine, text: str) -> int:
    version_id, _, _ = engine.apply(load_job_text(text, "job.yaml", "."))
    return version_id


def scheduler(engine: Engine, clock: Clock, holder: str = "s1") -> Scheduler:
    s = Scheduler(engine, clock=clock, holder=holder, lease=5.0)
    assert s.try_lead()
    return s


def fire(s: Scheduler) -> FireResult:
    """One pass as the live loop does it: renew the lease (the clock may have jumped), fire."""
    assert s.try_lead()
    return s.fire_due()


def runs(store: Store) -> list[tuple[Any, ...]]:
    with store.read() as tx:
        return tx.all("SELECT id, state, trigger, trigger_ref, params FROM runs ORDER BY id")


def firings(store: Store) -> list[tuple[float, int | None, str | None]]:
    with store.read() as tx:
        return [(float(f), r, n) for f, r, n in tx.all(
            "SELECT fire_at, run_id, note FROM schedule_firings ORDER BY fire_at")]


def end_all(store: Store) -> None:
    with store.tx() as tx:
        tx.run("UPDATE runs SET state = 'succeeded', finished_at = 0 WHERE state = 'running'")


def test_fires_after_apply_time_only_with_the_schedule_params(eng: Engine, store: Store,
                                                             clock: Clock) -> None:
    apply(eng, job())  # applied at T0 + 0.5: T0 itself is history
    s = scheduler(eng, clock)
    res = fire(s)
    assert res.runs == [] and res.next_due == T0 + 1
    clock.set(T0 + 1.0)
    res = fire(s)
    assert len(res.runs) == 1 and res.next_due == T0 + 2
    [(_, state, trigger, ref, params)] = runs(store)
    assert (state, trigger, ref) == ("running", "schedule", "0")
    assert '"who":"sched"' in params
    assert fire(s).runs == []  # the same instant never fires twice
    with store.read() as tx:
        assert tx.all("SELECT fired_count, last_fire_at FROM schedule_state") == [(1, T0 + 1)]


@pytest.mark.parametrize(("policy", "expected"), [
    ("skip", [T0 + 12]),  # the on-time one only
    ("run_once", [T0 + 12]),  # one run, for the latest
    ("run_all", [T0 + k for k in range(2, 13)]),
])
def test_misfire_policies_after_downtime(eng: Engine, store: Store, clock: Clock,
                                         policy: str, expected: list[float]) -> None:
    apply(eng, job(misfire=policy))
    s = scheduler(eng, clock)
    clock.set(T0 + 1.0)
    assert len(fire(s).runs) == 1
    clock.set(T0 + 12.5)  # down for T0+2 .. T0+12; T0+12 is within the 1 s grace
    fire(s)
    fired = [f for f, r, _ in firings(store) if r is not None and f > T0 + 1]
    assert fired == expected
    clock.set(T0 + 13.0)
    assert len(fire(s).runs) == 1  # and back on time


def test_skip_with_nothing_on_time_moves_the_mark(eng: Engine, store: Store,
                                                  clock: Clock) -> None:
    apply(eng, job(misfire="skip", every="10s"))
    s = scheduler(eng, clock)
    clock.set(T0 + 35.0)  # T0+10, +20, +30 all missed (the last one 5 s late)
    res = fire(s)
    assert res.runs == [] and res.next_due == T0 + 40
    # Each missed firing is recorded without a run, saying why (`taskplan firings`).
    assert [(f, r) for f, r, _ in firings(store)] == [(T0 + 10, None), (T0 + 20, None),
                                                      (T0 + 30, None)]
    assert all("on_misfire: skip" in (n or "") for _, _, n in firings(store))
    with store.read() as tx:
        assert tx.all("SELECT fired_count, last_fire_at FROM schedule_state") == [(0, T0 + 30)]
    clock.set(T0 + 40.0)
    assert len(fire(s).runs) == 1


def test_run_once_after_downtime_fires_the_latest_missed(eng: Engine, store: Store,
                                                          clock: Clock) -> None:
    apply(eng, job(misfire="run_once"))
    s = scheduler(eng, clock)
    clock.set(T0 + 7.6)  # T0+1..T0+7 due; T0+7 is 0.6 s late (on time), the rest missed
    fire(s)
    assert [f for f, r, _ in firings(store) if r is not None] == [T0 + 7]
    assert [f for f, r, n in firings(store) if "run_once" in (n or "")] == [
        T0 + k for k in range(1, 7)]


@pytest.mark.parametrize("overlap", ["skip", "queue"])
def test_run_all_makes_up_every_missed_firing_one_after_another(
        eng: Engine, store: Store, clock: Clock, overlap: str) -> None:
    """With `on_overlap: skip` (the default) or `queue`, run_all made one run after downtime,
    for the oldest missed firing: the next ones found it active and were skipped. The runs
    it makes up are made, queued behind each other, and run in firing order."""
    from engine_helpers import run_agent

    apply(eng, job(misfire="run_all", overlap=overlap))
    s = scheduler(eng, clock)
    clock.set(T0 + 5.5)  # T0+1 .. T0+4 missed, T0+5 on time
    made = fire(s).runs
    assert len(made) == 5
    assert [eng.run_state(r) for r in made] == ["running"] + ["queued"] * 4
    assert [r for _, r, _ in firings(store)] == made
    clock.set(T0 + 6.0)
    assert fire(s).runs == []  # on time again, and runs are still waiting: the policy holds
    run_agent(eng, None, root=False,
              until=lambda a: all(eng.run_state(r) == "succeeded" for r in made))
    with store.read() as tx:
        order = [int(r) for (r,) in tx.all(
            "SELECT id FROM runs WHERE id IN (" + ", ".join(map(str, made)) + ")"
            " ORDER BY started_at, id")]
    assert order == made


def test_run_all_is_capped(eng: Engine, store: Store, clock: Clock) -> None:
    apply(eng, job(misfire="run_all"))
    s = scheduler(eng, clock)
    clock.set(T0 + 500.2)
    res = fire(s)
    assert len(res.runs) == RUN_ALL_CAP
    assert [f for f, _, _ in firings(store)][-1] == T0 + 500
    assert res.next_due == T0 + 501


def test_overlap_skip_records_the_firing_with_a_note(eng: Engine, store: Store,
                                                     clock: Clock) -> None:
    apply(eng, job(overlap="skip"))
    s = scheduler(eng, clock)
    clock.set(T0 + 1.0)
    fire(s)
    clock.set(T0 + 2.0)
    res = fire(s)
    assert res.runs == [] and res.skipped == 1
    last = firings(store)[-1]
    assert last[0] == T0 + 2 and last[1] is None and "on_overlap: skip" in (last[2] or "")
    end_all(store)
    clock.set(T0 + 3.0)
    assert len(fire(s).runs) == 1


def test_overlap_queue_starts_when_the_active_run_ends(eng: Engine, store: Store,
                                                      clock: Clock) -> None:
    from engine_helpers import run_agent

    apply(eng, job(overlap="queue"))
    s = scheduler(eng, clock)
    clock.set(T0 + 1.0)
    [first] = fire(s).runs
    clock.set(T0 + 2.0)
    [second] = fire(s).runs
    clock.set(T0 + 3.0)
    assert fire(s).runs == []  # one queued run per job at most
    assert eng.run_state(second) == "queued"
    # An agent runs the first; its end (engine hook) starts the queued one, which then runs.
    run_agent(eng, None, root=False, until=lambda a: eng.run_state(second) == "succeeded")
    assert eng.run_state(first) == "succeeded"


def test_allow_overlap_and_max_runs(eng: Engine, store: Store, clock: Clock) -> None:
    apply(eng, job(overlap="allow", extra=("max_runs: 3", "start: 2027-01-15T08:00:01")))
    s = scheduler(eng, clock)
    for k in range(1, 7):
        clock.set(T0 + k)
        fire(s)
    assert len(runs(store)) == 3


def test_new_version_starts_from_its_apply_time(eng: Engine, store: Store,
                                                clock: Clock) -> None:
    apply(eng, job())
    s = scheduler(eng, clock)
    clock.set(T0 + 1.0)
    fire(s)
    clock.set(T0 + 50.5)
    apply(eng, job(extra=("params: {who: v2}",)))
    clock.set(T0 + 51.0)
    res = fire(s)
    assert len(res.runs) == 1  # T0+51 only: nothing between the old mark and the new apply


def test_two_schedulers_never_fire_twice(eng: Engine, store: Store, clock: Clock) -> None:
    apply(eng, job(misfire="run_all"))
    a = scheduler(eng, clock, "a")
    b = Scheduler(eng, clock=clock, holder="b", lease=5.0)
    assert not b.try_lead()  # a holds the lease
    b.leader = True  # pretend b believes it leads (a stale leader): fencing must stop it
    clock.set(T0 + 5.0)
    assert a.try_lead()
    out: list[list[int]] = []
    threads = [threading.Thread(target=lambda s=s: out.append(s.fire_due().runs))
               for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r) for r in out) == [0, 5]
    with store.read() as tx:
        per_instant = tx.all("SELECT fire_at, COUNT(*) FROM schedule_firings GROUP BY fire_at")
    assert all(n == 1 for _, n in per_instant) and len(per_instant) == 5


def test_a_standby_takes_over_when_the_lease_expires(eng: Engine, clock: Clock) -> None:
    a = scheduler(eng, clock, "a")
    b = Scheduler(eng, clock=clock, holder="b", lease=5.0)
    assert not b.try_lead()
    clock.set(T0 + 0.5 + 4.0)
    assert a.try_lead() and not b.try_lead()  # renewed
    clock.set(T0 + 0.5 + 9.5)  # a died after its renewal: its lease ran out
    assert b.try_lead()
    assert not a.try_lead()
    b.release()
    assert a.try_lead()


def test_a_standby_takes_over_at_once_when_the_leader_releases(store_url: str) -> None:
    """A leader that stops cleanly releases its lease, but the standby (another process) took
    it only at its own next renewal, up to lease/3 later: the firings due meanwhile were
    recorded 'missed while no scheduler ran', and lost with on_misfire: skip. The release's
    commit wakes the standby, which takes the lease then. Real clock; the standby renews
    every 20 s, so a takeover within 10 s is the wake's doing."""
    first, second = Store(store_url), Store(store_url)
    a = Scheduler(Engine(first), holder="a", lease=60.0)
    b = Scheduler(Engine(second), holder="b", lease=60.0)
    tries: list[bool] = []
    take = b.try_lead
    b.try_lead = lambda: tries.append(take()) or tries[-1]  # type: ignore[method-assign]
    daemon = threading.Thread(target=b.run, daemon=True)
    try:
        assert a.try_lead()
        second.listen()
        assert second.wait_listening()
        daemon.start()
        deadline = time.monotonic() + 10
        while not tries:  # the standby tried once (and failed: `a` leads), then sleeps
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert tries == [False]
        a.release()
        deadline = time.monotonic() + 10
        while not b.leader:
            assert time.monotonic() < deadline, "the standby did not take the released lease"
            time.sleep(0.02)
        assert tries == [False, True]
    finally:
        b.stop()
        daemon.join(10)
        first.close()
        second.close()


def test_a_leader_held_up_by_a_lock_fires_late_instead_of_skipping(tmp_path: Path) -> None:
    """A firing that falls due while the running leader waits for another process's write lock
    (here across its lease renewal) is late, not missed: with on_misfire: skip it used to be
    recorded as 'missed while no scheduler ran' and made no run. Real clock, real lock."""
    path = tmp_path / "taskplan.db"
    store = Store(f"sqlite:///{path}")
    engine = Engine(store)
    apply(engine, job(misfire="skip", every="3s"))
    s = Scheduler(engine, lease=3.0)  # renews every second: once while the lock is held
    daemon = threading.Thread(target=s.run, daemon=True)
    daemon.start()
    try:
        deadline = time.monotonic() + 20
        while not s.leader:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        due = (math.floor(time.time() / 3) + 1) * 3.0
        if due - time.time() < 1.5:
            due += 3
        time.sleep(due - 0.8 - time.time())
        holder = sqlite3.connect(path, isolation_level=None, timeout=30)
        holder.execute("BEGIN IMMEDIATE")
        time.sleep(due + 1.8 - time.time())  # the leader's renewal waits here
        holder.execute("COMMIT")
        holder.close()
        while due not in [f for f, _, _ in firings(store)]:
            assert time.monotonic() < deadline + 10
            time.sleep(0.05)
        [(_, run_id, note)] = [f for f in firings(store) if f[0] == due]
    finally:
        s.stop()
        daemon.join(10)
        store.close()
    assert run_id is not None and note is None, note
