"""Pools: a named concurrency limit shared by every run and every task of every job."""

from __future__ import annotations

import json

from engine_helpers import TERMINAL, apply_job, intervals, max_overlap, run_agent

from taskplan.engine import Engine
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
