"""The claim stays on its index when runs need labels or are pinned, or when it reads past
full pools, on both backends and in the PostgreSQL server step (plans read with EXPLAIN /
auto_explain on fresh tables)."""

from __future__ import annotations

import json
import time
from typing import Any

import psycopg
import pytest

from taskplan.engine import Engine
from taskplan.spec import load_job_text
from taskplan.store import ops
from taskplan.store.claims import STEP_CALL
from taskplan.store.db import Store
from taskplan.store.dialects.postgresql import to_pyformat

INDEX = "ix_task_runs_run_id_state_rank_ready_at"


def fill(store: Store) -> None:
    """20 runs, 20,000 task runs of which 2,000 ready, a third of those needing labels."""
    with store.tx() as tx:
        tx.run("INSERT INTO jobs (name, created_at, updated_at) VALUES ('j', 0, 0)")
        tx.run("INSERT INTO job_versions (job_id, version, spec_hash, definition, source_path,"
               " base_dir, created_at) VALUES (1, 1, 'h', '{}', '', '', 0)")
        tx.run("INSERT INTO label_sets (labels) VALUES ('etl'), ('gpu')")
        for _ in range(20):
            tx.run("INSERT INTO runs (job_id, version_id, state, trigger, params, on_failure,"
                   " created_at, max_label_set) VALUES (1, 1, 'running', 'manual', '{}',"
                   " 'continue', 0, 2)")
        tx.many("INSERT INTO task_runs (run_id, task, kind, state, trigger_rule, rank, ready_at,"
                " label_set) VALUES (:r, :t, 'task', :s, 'all_success', 0, :g, :l)",
                [{"r": 1 + g % 20, "t": f"t{g}", "s": "ready" if g % 10 == 0 else "succeeded",
                  "g": g, "l": None if g % 3 else 1 + g % 2} for g in range(1, 20001)])


@pytest.mark.parametrize("label_sets", [None, (), (1,), (1, 2)])
def test_the_claim_query_with_labels_reads_its_index(store: Store,
                                                     label_sets: tuple[int, ...] | None
                                                     ) -> None:
    fill(store)
    for staged in (False, True):
        sql = ops.claim_candidates_sql(store.dialect, staged, label_sets)
        sql = sql.replace(":r", "7").replace(":k", "4").replace(":ms", "3")
        assert_reads_the_index(store, sql)


def assert_reads_the_index(store: Store, sql: str) -> None:
    """The claim query's plan walks the claim index in order (no sort step)."""
    if store.backend == "postgresql":
        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute("ANALYZE task_runs")
            plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}"))
        assert INDEX in plan and "Sort" not in plan, plan
    else:
        with store.read() as tx:
            plan = "\n".join(str(r[-1]) for r in tx.all(f"EXPLAIN QUERY PLAN {sql}"))
        assert INDEX in plan and "TEMP B-TREE" not in plan, plan


@pytest.mark.parametrize("full_pools", [1, 2])
def test_the_claim_query_past_full_pools_reads_its_index(store: Store, full_pools: int
                                                         ) -> None:
    fill(store)
    for staged in (False, True):
        sql = ops.claim_candidates_sql(store.dialect, staged, None, full_pools)
        sql = sql.replace(":r", "7").replace(":k", "4").replace(":ms", "3")
        for i in range(full_pools):
            sql = sql.replace(f":f{i}", f"'pool{i}'")
        assert_reads_the_index(store, sql)


def test_the_server_step_claims_labelled_runs_by_index(store: Store) -> None:
    if store.backend != "postgresql":
        pytest.skip("PostgreSQL only: the server-side step")
    engine = Engine(store)
    spec = load_job_text(
        "job: wide\ntasks:\n" + "".join(
            f"  t{i:03d}: {{python: 'm:f'{', agent_labels: [gpu]' if i % 2 else ''}}}\n"
            for i in range(400)), "wide.yaml", ".")
    version_id, _, _ = engine.apply(spec)
    run_id = engine.create_run(version_id)
    agent_id = engine.register_agent("a", "h", 1, 4, 60.0, ("host=h",))  # no gpu
    plans: list[str] = []
    claimed: list[str] = []
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_nested_statements = on",
                        "log_level = 'notice'"):
            conn.execute(f"SET auto_explain.{setting}")
        done: list[dict[str, Any]] = []
        for _ in range(8):
            rows = conn.execute(to_pyformat(STEP_CALL), {
                "agent": agent_id, "now": time.time(), "free": 4, "root": run_id,
                "wake": bool(done), "done": json.dumps(done)}).fetchall()
            assert rows and rows[0][0] == "claim", rows
            claimed += [str(r[4]) for r in rows]
            done = [{"i": r[1], "r": r[2], "a": r[7], "t": time.time(), "x": None,
                     "res": None, "e": None} for r in rows if r[0] == "claim"]
    assert len(claimed) == 32 and all(int(t[1:]) % 2 == 0 for t in claimed), claimed
    claims = [p for p in plans if " on task_runs" in p and "t.state = 'ready'" in p
              and "LIMIT" in p]
    assert claims
    for plan in claims:
        assert INDEX in plan and "Sort" not in plan, plan
    for plan in plans:
        assert "Seq Scan on task_runs" not in plan, plan


def fill_history(store: Store, finished: int, running_pooled: int) -> None:
    """`finished` task runs of a long history (pooled and not) and a few running in pools."""
    fill(store)
    rows = [{"r": 1 + g % 20, "t": f"h{g}", "s": "succeeded", "p": "mart" if g % 2 else None}
            for g in range(finished)]
    rows += [{"r": 1 + g % 20, "t": f"p{g}", "s": "running", "p": f"pool{g % 3}"}
             for g in range(running_pooled)]
    with store.tx() as tx:
        tx.many("INSERT INTO task_runs (run_id, task, kind, state, trigger_rule, pool)"
                " VALUES (:r, :t, 'task', :s, 'all_success', :p)", rows)


def test_counting_a_pools_running_task_runs_reads_only_running_ones(store: Store) -> None:
    """A claim of a pooled task counts each pool's running task runs: that count reads the
    partial index of running pooled task runs, not every task run the store has kept."""
    fill_history(store, finished=20_000, running_pooled=7)
    with store.read() as tx:
        assert ops.pool_usage(tx, ["pool0", "pool1", "mart", "none"]) == {"pool0": 3,
                                                                        "pool1": 2}
    sql = ops.pool_usage_sql(3).replace(":p0", "'pool0'").replace(":p1", "'pool1'")
    sql = sql.replace(":p2", "'mart'")
    if store.backend == "postgresql":
        with psycopg.connect(store.url, autocommit=True) as conn:
            conn.execute("ANALYZE task_runs")
            plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}"))
    else:
        with store.read() as tx:
            plan = "\n".join(str(r[-1]) for r in tx.all(f"EXPLAIN QUERY PLAN {sql}"))
    assert "ix_task_runs_pool" in plan, plan


def test_the_server_step_counts_pool_room_by_index(store: Store) -> None:
    if store.backend != "postgresql":
        pytest.skip("PostgreSQL only: the server-side step")
    fill_history(store, finished=20_000, running_pooled=0)
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute("ANALYZE task_runs")
        conn.execute("INSERT INTO pools (name, size) VALUES ('mart', 2)")
        plans: list[str] = []
        conn.add_notice_handler(lambda d: plans.append(d.message_primary or ""))
        conn.execute("LOAD 'auto_explain'")
        for setting in ("log_min_duration = 0", "log_nested_statements = on",
                        "log_level = 'notice'"):
            conn.execute(f"SET auto_explain.{setting}")
        engine = Engine(store)
        spec = load_job_text("job: pooled\ntasks:\n" + "".join(
            f"  t{i}: {{python: 'm:f', pool: mart}}\n" for i in range(6)), "p.yaml", ".")
        version_id, _, _ = engine.apply(spec)
        run_id = engine.create_run(version_id)
        agent_id = engine.register_agent("a", "h", 1, 4, 60.0, ("host=h",))
        rows = conn.execute(to_pyformat(STEP_CALL), {
            "agent": agent_id, "now": time.time(), "free": 4, "root": run_id,
            "wake": False, "done": "[]"}).fetchall()
    assert [r[0] for r in rows] == ["claim", "claim"], rows  # the pool's 2 slots, no more
    counts = [p for p in plans if "count(*)" in p and "'running'" in p]
    assert counts, plans
    for plan in counts:
        assert "ix_task_runs_pool" in plan and "Seq Scan on task_runs" not in plan, plan
