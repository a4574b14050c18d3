"""The wall clock jumps an hour forward, then an hour back, while the scheduler daemon runs.

The scheduler's clock is injected (real time plus an offset the test moves), its sleeps are
real. Every firing instant is created at most once, the hour jumped over is handled as the
misfire policy says (as if the scheduler had been down), the hour replayed after the jump back
creates nothing, and the loop does not spin while the clock is behind its marks.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from taskplan.agent import Agent
from taskplan.engine import Engine
from taskplan.scheduler import RUN_ALL_CAP, FireResult, Scheduler
from taskplan.spec import load_job_text
from taskplan.store.db import Store

HOUR = 3600.0
POLICIES = ("skip", "run_once", "run_all")


class JumpingClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


class CountingScheduler(Scheduler):
    """The real scheduler, counting its passes over the schedules."""

    passes = 0

    def fire_due(self) -> FireResult:
        self.passes += 1
        return super().fire_due()


def firings(store: Store, job: str | None = None) -> list[tuple[float, int | None, float]]:
    """(instant, run or None, when the scheduler recorded it), by instant."""
    with store.read() as tx:
        return [(float(f), r, float(c)) for f, r, c in tx.all(
            "SELECT f.fire_at, f.run_id, f.created_at FROM schedule_firings f"
            " JOIN jobs j ON j.id = f.job_id WHERE j.name = COALESCE(:j, j.name)"
            " ORDER BY f.fire_at, f.job_id", {"j": job})]


def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_clock_jumps_forward_and_back(store: Store) -> None:
    clock = JumpingClock()
    engine = Engine(store, clock=clock)
    for misfire in POLICIES:
        engine.apply(load_job_text(
            f"job: {misfire.replace('_', '-')}\non_misfire: {misfire}\non_overlap: allow\n"
            "schedules:\n  - every: 1s\ntasks:\n  a: {shell: 'true'}\n", "job.yaml", "."))
    s = CountingScheduler(engine, clock=clock, lease=3.0)
    daemon = threading.Thread(target=s.run, daemon=True)
    daemon.start()
    try:
        wait_until(lambda: len(firings(store)) >= 3)
        jumped_at = clock()
        clock.jump(HOUR)
        wait_until(lambda: sum(f > jumped_at + HOUR for f, _, _ in firings(store)) >= 3)
        back_at = clock()
        clock.jump(-HOUR)
        time.sleep(0.5)  # a pass begun before the jump back may still commit
        before_back = firings(store)
        passes = s.passes
        time.sleep(2.0)  # the clock now replays an hour the marks are past
        after_back = firings(store)
        spent = s.passes - passes
    finally:
        s.stop()
        daemon.join(10)
    # Nothing created while the clock replays instants already dealt with, and no spinning:
    # a pass per lease renewal (1 s) at most, not thousands.
    assert after_back == before_back
    assert spent <= 4, spent
    with store.read() as tx:
        scheduled = tx.all("SELECT id FROM runs WHERE trigger = 'schedule' ORDER BY id")
    assert [r for (r,) in scheduled] == sorted(r for _, r, _ in after_back if r is not None)
    for misfire in POLICIES:
        mine = firings(store, misfire.replace("_", "-"))
        instants = [f for f, _, _ in mine]
        assert len(instants) == len(set(instants)) and max(instants) <= back_at + 1
        # The first pass after the jump forward meets an hour of due instants, as after an
        # hour of downtime: it fires what the policy says, no more (never the whole hour).
        seen = min(c for f, _, c in mine if f > jumped_at + 1)
        fired = [f for f, r, c in mine if c == seen and r is not None]
        if misfire == "skip":
            assert all(f >= seen - 1.0 for f in fired) and len(fired) <= 2  # on time only
        elif misfire == "run_once":
            assert len(fired) == 1 and fired[0] > seen - 1.0  # the latest
        else:
            assert len(fired) == RUN_ALL_CAP and max(fired) > seen - 1.0  # the latest 100
        assert not [f for f in instants if jumped_at + 1 < f < seen - RUN_ALL_CAP - 1]


def test_a_clock_jump_forward_does_not_make_live_agents_look_dead(store: Store) -> None:
    """Every lease looks expired on the new clock; a reaping agent must let live agents renew
    first instead of declaring them lost and running their work twice."""
    clock = JumpingClock()
    worker_engine = Engine(store, clock=clock)
    run_id = worker_engine.create_run(worker_engine.apply(load_job_text(
        "job: long\ntasks:\n  a: {shell: 'sleep 2', retries: 1}\n", "job.yaml", "."))[0])
    # The worker renews every 2 s; the reaper (which claims nothing of this run) beats every
    # 0.5 s, so it looks first.
    worker = Agent(worker_engine, slots=1, lease=6.0, root_run_id=run_id)
    reaper = Agent(Engine(store, clock=clock), slots=1, lease=1.5, root_run_id=run_id + 1)
    done = threading.Event()
    threads = [threading.Thread(target=reaper.run, kwargs={"until": lambda _: done.is_set()}),
               threading.Thread(target=worker.run,
                                kwargs={"until": lambda a: run_id in a.finished_runs})]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: worker.busy == 1)
        time.sleep(0.3)
        clock.jump(HOUR)
        threads[1].join(30)
    finally:
        done.set()
        worker.cancel_running()
        for t in threads:
            t.join(10)
    with store.read() as tx:
        row = tx.one("SELECT state, attempts FROM task_runs WHERE run_id = :r", {"r": run_id})
        lost = tx.scalar("SELECT COUNT(*) FROM agents WHERE state = 'lost'")
    assert row == ("succeeded", 1) and lost == 0


def test_an_agent_started_after_a_clock_jump_does_not_take_live_agents_for_dead(
        store: Store) -> None:
    """An agent (or `taskplan run`) that starts just after the clock jumped forward has no
    earlier reading to see the jump by, and every lease looks expired to it: it must let live
    agents renew theirs first, as an agent that saw the jump does."""
    clock = JumpingClock()
    worker_engine = Engine(store, clock=clock)
    run_id = worker_engine.create_run(worker_engine.apply(load_job_text(
        "job: long\ntasks:\n  a: {shell: 'sleep 2', retries: 1}\n", "job.yaml", "."))[0])
    worker = Agent(worker_engine, slots=1, lease=6.0, root_run_id=run_id)
    worker_thread = threading.Thread(
        target=worker.run, kwargs={"until": lambda a: run_id in a.finished_runs})
    worker_thread.start()
    try:
        wait_until(lambda: worker.busy == 1)
        clock.jump(HOUR)
        # Started after the jump; it claims nothing of this run, it only reaps.
        fresh = Agent(Engine(store, clock=clock), slots=1, lease=6.0, root_run_id=run_id + 1)
        fresh.run(until=lambda _: not worker_thread.is_alive())
    finally:
        worker.cancel_running()
        worker_thread.join(30)
    with store.read() as tx:
        row = tx.one("SELECT state, attempts FROM task_runs WHERE run_id = :r", {"r": run_id})
        lost = tx.scalar("SELECT COUNT(*) FROM agents WHERE state = 'lost'")
    assert row == ("succeeded", 1) and lost == 0
