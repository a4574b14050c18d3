"""Pools: a named concurrency limit shared by every run and every task of every job."""

from __future__ import annotations

import json

import pytest
from engine_helpers import TERMINAL, apply_job, intervals, max_overlap, run_agent

from taskplan.engine import Claim, Engine, Outcome
from taskplan.model import TaskState
from taskplan.store.db import Store

JOB = """
    job: pooled_{n}
    pools: {{narrow: 2}}
    params: {{sleep: 0.05}}
    tasks:
      a: {{python: "tpjobs:record", pool: narrow}}
      b: {{python: "tpjobs:record", pool: narrow}}
      c: {{python: "tpjobs:record", pool: narrow}}
      d: {{python: "tpjobs:record", pool: narrow}}
      free: {{python: "tpjobs:record"}}
    """


def test_a_pool_of_two_is_never_exceeded_across_two_runs(engine: Engine, store: Store) -> None:
    runs = [engine.create_run(apply_job(engine, JOB.format(n=i))) for i in (1, 2)]
    agent = run_agent(engine, None, slots=8, root=False,
                      until=lambda a: all(engine.run_state(r) in TERMINAL for r in runs))
    spans = []
    for run_id in runs:
        assert engine.run_state(run_id) == "succeeded"
        spans += [iv for name, iv in intervals(store, run_id).items() if name != "free"]
    assert len(spans) == 8
    assert max_overlap(spans) == 2
    assert agent.max_concurrency >= 3  # the unpooled tasks did run beside the pool


def test_foreach_items_take_pool_room_and_the_parent_takes_none(engine: Engine, store: Store
                                                               ) -> None:
    run_id = engine.create_run(apply_job(engine, """
        job: pooled_items
        pools: {narrow: 2}
        tasks:
          each:
            foreach: {values: [{sleep: 0.05}, {sleep: 0.05}, {sleep: 0.05}, {sleep: 0.05}]}
            python: "tpforeach:item"
            pool: narrow
        """))
    run_agent(engine, run_id, slots=8)
    assert engine.run_state(run_id) == "succeeded"
    with store.read() as tx:
        results = [r[0] for r in tx.all("SELECT result FROM task_runs WHERE run_id = :r AND"
                                        " parent_id IS NOT NULL", {"r": run_id})]
    spans = [(json.loads(r)["start"], json.loads(r)["end"]) for r in results]
    assert len(spans) == 4
    assert max_overlap(spans) == 2


# Pooled tasks at the head of the queue (higher priority), unpooled ones behind them. Every
# step below is driven by hand, so what one claim takes is exact; `one_by_one` is the general
# path in Python, the other the server step on PostgreSQL (the same path on SQLite).
QUEUE = """
    job: queue_{n}
    {limits}
    tasks:
      a: {{shell: "true", pool: p, priority: 9}}
      b: {{shell: "true", pool: p, priority: 8}}
      c: {{shell: "true", pool: {c_pool}, priority: 7}}
      d: {{shell: "true", {d_pool}priority: 2}}
      e: {{shell: "true", priority: 1}}
    """


def _queue(engine: Engine, n: int, limits: str, c_pool: str = "p", d_pool: str = "") -> int:
    return engine.create_run(apply_job(engine, QUEUE.format(
        n=n, limits=limits, c_pool=c_pool, d_pool=f"pool: {d_pool}, " if d_pool else "")))


def _tasks(claims: list[Claim]) -> list[str]:
    return sorted(c.task for c in claims)


@pytest.mark.parametrize("one_by_one", [False, True], ids=["step", "one_by_one"])
def test_a_full_pool_at_the_head_leaves_its_slots_to_the_tasks_behind(store: Store,
                                                                     one_by_one: bool
                                                                     ) -> None:
    engine = Engine(store, one_by_one=one_by_one)
    run_id = _queue(engine, 1, "pools: {p: 1}")
    agent = engine.register_agent("A", "h", 1, 2, 3600.0)
    first = engine.step(agent, [], 2, run_id).claims
    assert _tasks(first) == ["a", "d"]  # b and c wait for the pool, d is next
    # The pool is full before this claim reads (a runs): e is found behind b and c.
    assert _tasks(engine.step(agent, [], 1, run_id).claims) == ["e"]
    (a,) = [c for c in first if c.task == "a"]
    done = engine.step(agent, [(a, Outcome(TaskState.SUCCEEDED))], 1, run_id)
    assert _tasks(done.claims) == ["b"]


@pytest.mark.parametrize("one_by_one", [False, True], ids=["step", "one_by_one"])
def test_max_parallel_is_filled_past_a_full_pool(store: Store, one_by_one: bool) -> None:
    engine = Engine(store, one_by_one=one_by_one)
    run_id = _queue(engine, 1, "pools: {p: 1}\n    max_parallel: 3")
    agent = engine.register_agent("A", "h", 1, 8, 3600.0)
    assert _tasks(engine.step(agent, [], 8, run_id).claims) == ["a", "d", "e"]


@pytest.mark.parametrize("one_by_one", [False, True], ids=["step", "one_by_one"])
def test_each_pool_that_fills_up_is_read_past(store: Store, one_by_one: bool) -> None:
    engine = Engine(store, one_by_one=one_by_one)
    # The first read (a, b, c) takes a and c, which fills both pools: the next leaves out b
    # and d and finds e.
    run_id = _queue(engine, 1, "pools: {p: 1, q: 1}", c_pool="q", d_pool="q")
    agent = engine.register_agent("A", "h", 1, 3, 3600.0)
    assert _tasks(engine.step(agent, [], 3, run_id).claims) == ["a", "c", "e"]


@pytest.mark.parametrize("one_by_one", [False, True], ids=["step", "one_by_one"])
def test_a_pool_another_run_filled_is_read_past(store: Store, one_by_one: bool) -> None:
    engine = Engine(store, one_by_one=one_by_one)
    first = _queue(engine, 1, "pools: {p: 1}")
    second = _queue(engine, 2, "pools: {p: 1}")
    agent = engine.register_agent("A", "h", 1, 4, 3600.0)
    assert _tasks(engine.step(agent, [], 1, first).claims) == ["a"]
    assert _tasks(engine.step(agent, [], 2, second).claims) == ["d", "e"]
