"""Who runs when: priority, max_parallel, slots, pools, exactly-once claims, fair shares."""

from __future__ import annotations

import threading

from engine_helpers import (
    TERMINAL,
    apply_job,
    events,
    in_thread,
    intervals,
    max_overlap,
    run_agent,
    run_job,
    start_run,
    tasks,
    wait_for,
)

from taskplan.agent import Agent
from taskplan.engine import Engine, Outcome, RunShare, fair_shares
from taskplan.model import TaskState
from taskplan.store.db import Store


def _many(n: int, prefix: str = "t", extra: str = "") -> str:
    return "\n".join(f'  {prefix}{i:03d}: {{python: "tpjobs:record"{extra}}}' for i in range(n))


# -- fair_shares, the pure split of free slots --------------------------------------------------
def test_fair_shares_priority_first() -> None:
    runs = [RunShare(1, priority=0, running=0, ready=10, max_parallel=None),
            RunShare(2, priority=5, running=0, ready=10, max_parallel=None)]
    assert fair_shares(runs, 3) == {2: 3}
    assert fair_shares(runs, 12) == {2: 10, 1: 2}


def test_fair_shares_fewest_running_next() -> None:
    runs = [RunShare(1, priority=0, running=3, ready=100, max_parallel=None),
            RunShare(2, priority=0, running=0, ready=5, max_parallel=None)]
    # At equal load (3 each), the run with less left to run goes first.
    assert fair_shares(runs, 4) == {2: 4}
    assert fair_shares(runs, 5) == {2: 4, 1: 1}
    # Equal load: slots alternate rather than all going to the bigger run.
    even = [RunShare(1, 0, 0, 100, None), RunShare(2, 0, 0, 100, None)]
    assert fair_shares(even, 6) == {1: 3, 2: 3}


def test_fair_shares_ties_go_to_the_run_with_less_left() -> None:
    """One slot, two runs with nothing running: the small run takes it. By lowest run id,
    each slot the big (older) run freed went back to it, and a run with 10 tasks waited for
    every one of 10,000 (a one-slot agent; or as many runs as slots, and one more)."""
    runs = [RunShare(1, 0, 0, 10_000, None), RunShare(2, 0, 0, 10, None)]
    assert fair_shares(runs, 1) == {2: 1}
    assert fair_shares([RunShare(1, 0, 0, 10, None), RunShare(2, 0, 0, 10, None)], 1) == {1: 1}


def test_a_freed_slot_goes_to_a_small_run_before_the_big_run_that_freed_it(
        engine: Engine, store: Store) -> None:
    big = start_run(engine, "job: big\ntasks:\n" + _many(20))
    agent_id = engine.register_agent("one", "h", 2**22 + 9, 1, 3600.0)
    (claim,) = engine.step(agent_id, [], 1).claims
    assert claim.run_id == big
    small = start_run(engine, "job: small\ntasks:\n" + _many(2))
    order = []
    for _ in range(4):  # each step records the one attempt that ended and claims the next
        (claim,) = engine.step(agent_id, [(claim, Outcome(TaskState.SUCCEEDED))], 1).claims
        order.append(claim.run_id)
    assert order == [small, small, big, big]


def test_fair_shares_respects_max_parallel_and_ready() -> None:
    runs = [RunShare(1, priority=9, running=1, ready=10, max_parallel=2),
            RunShare(2, priority=0, running=0, ready=2, max_parallel=None),
            RunShare(3, priority=0, running=0, ready=0, max_parallel=None)]
    assert fair_shares(runs, 8) == {1: 1, 2: 2}
    full = [RunShare(1, 0, running=4, ready=3, max_parallel=4)]
    assert fair_shares(full, 4) == {}
    assert fair_shares(runs, 0) == {}


# -- the agent against a real store -------------------------------------------------------------
def test_priority_orders_claims_with_one_slot(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: prio
        tasks:
          low: {python: "tpjobs:record", priority: 1}
          top: {python: "tpjobs:record", priority: 50}
          mid: {python: "tpjobs:record", priority: 10}
          high: {python: "tpjobs:record", priority: 20}
          neg: {python: "tpjobs:record", priority: -5}
        """, slots=1)
    by_id = {t["id"]: n for n, t in tasks(store, run_id).items()}
    order = [by_id[tr] for tr, state, _ in events(store, run_id)
             if state == "running" and tr is not None]
    assert order == ["top", "high", "mid", "low", "neg"]


def test_max_parallel_is_never_exceeded(engine: Engine, store: Store) -> None:
    text = "job: capped\nmax_parallel: 2\nparams: {sleep: 0.03}\ntasks:\n" + _many(10)
    run_id, agent = run_job(engine, text, slots=6)
    assert set(t["state"] for t in tasks(store, run_id).values()) == {"succeeded"}
    assert agent.max_concurrency == 2
    assert max_overlap(list(intervals(store, run_id).values())) <= 2


def test_slots_are_never_exceeded(engine: Engine, store: Store) -> None:
    text = "job: slotted\nparams: {sleep: 0.03}\ntasks:\n" + _many(12)
    run_id, agent = run_job(engine, text, slots=3)
    assert set(t["state"] for t in tasks(store, run_id).values()) == {"succeeded"}
    assert agent.max_concurrency == 3
    assert 2 <= max_overlap(list(intervals(store, run_id).values())) <= 3


def test_pool_limits_concurrency_of_its_tasks(engine: Engine, store: Store) -> None:
    text = ("job: pooled\npools: {narrow: 1}\nparams: {sleep: 0.03}\ntasks:\n"
            + _many(4, "n", ", pool: narrow") + "\n" + _many(4, "free"))
    run_id, _ = run_job(engine, text, slots=4)
    spans = intervals(store, run_id)
    assert len(spans) == 8
    assert max_overlap([iv for n, iv in spans.items() if n.startswith("n")]) == 1


def test_each_task_run_is_claimed_once_across_agents(store: Store) -> None:
    """Three agents, each with its own Store (own connections) on one file, share a run."""
    first = Engine(store)
    run_id = start_run(first, "job: shared\ntasks:\n" + _many(60))
    stores = [Store(store.url) for _ in range(2)]
    engines = [first] + [Engine(s) for s in stores]
    errors: list[BaseException] = []

    def work(eng: Engine) -> None:
        try:
            run_agent(eng, run_id, slots=3)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(e,)) for e in engines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert errors == []
    got = tasks(store, run_id)
    assert len(got) == 60
    assert {t["state"] for t in got.values()} == {"succeeded"}
    assert {t["attempts"] for t in got.values()} == {1}
    with store.read() as tx:
        rows = tx.all("SELECT task_run_id, COUNT(*) FROM attempts WHERE run_id = :r"
                      " GROUP BY task_run_id", {"r": run_id})
        runs_events = tx.scalar("SELECT COUNT(*) FROM events WHERE run_id = :r AND"
                                " state = 'running' AND task_run_id IS NOT NULL", {"r": run_id})
    assert len(rows) == 60 and {int(c) for _, c in rows} == {1}
    assert runs_events == 60
    assert first.run_state(run_id) == "succeeded"


def test_small_run_is_not_starved_by_a_big_one(engine: Engine, store: Store) -> None:
    big = apply_job(engine, "job: big\nparams: {sleep: 0.01}\ntasks:\n" + _many(200))
    small = apply_job(engine, "job: small\nparams: {sleep: 0.01}\ntasks:\n" + _many(5))
    run_a = engine.create_run(big)
    created: list[int] = []

    def both_done(_: Agent) -> bool:
        return len(created) == 1 and all(
            engine.run_state(r) in TERMINAL for r in (run_a, created[0]))

    agent_thread = in_thread(lambda: run_agent(engine, None, slots=4, root=False,
                                               until=both_done, timeout=60))

    def a_done() -> int:
        with store.read() as tx:
            return int(tx.scalar("SELECT COUNT(*) FROM task_runs WHERE run_id = :r"
                                 " AND state = 'succeeded'", {"r": run_a}))

    wait_for(lambda: a_done() >= 8, what="run A to get going")
    created.append(engine.create_run(small))
    agent_thread.join(60)
    assert not agent_thread.is_alive()
    run_b = created[0]
    assert engine.run_state(run_a) == engine.run_state(run_b) == "succeeded"
    with store.read() as tx:
        b_end = float(tx.scalar("SELECT finished_at FROM runs WHERE id = :r", {"r": run_b}))
        a_end = float(tx.scalar("SELECT finished_at FROM runs WHERE id = :r", {"r": run_a}))
        a_before_b = int(tx.scalar(
            "SELECT COUNT(*) FROM task_runs WHERE run_id = :r AND kind = 'task'"
            " AND finished_at <= :t", {"r": run_a, "t": b_end}))
    assert b_end < a_end
    # B's five tasks went through while A had done only a small part of its 200.
    assert a_before_b < 100, a_before_b
