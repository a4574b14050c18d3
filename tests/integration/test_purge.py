"""`taskplan purge`: finished runs past retention go with everything hanging off them; a
sub-job run goes with the run that started it, never while that run is still active."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from engine_helpers import apply_job, run_agent, start_run

from taskplan.agent import Agent
from taskplan.engine import Engine
from taskplan.store import reports
from taskplan.store.db import Store

CHILD = """
    job: child
    tasks:
      each: {foreach: {values: [1, 2, 3]}, python: "tpjobs:record"}
    """

PARENT = """
    job: parent
    tasks:
      sub: {job: child}
      after: {python: "tpjobs:record", depends_on: [sub], agent_labels: [late]}
    """

# Every table that names a run or a task run, and the column that does.
REFERENCES = [
    ("task_runs", "run_id"), ("attempts", "run_id"), ("events", "run_id"),
    ("notifications", "run_id"),
]


def leftovers(store: Store) -> dict[str, int]:
    """Rows that point at a run or task run that is gone."""
    out: dict[str, int] = {}
    with store.read() as tx:
        for table, column in REFERENCES:
            out[table] = int(tx.scalar(
                f"SELECT COUNT(*) FROM {table} x WHERE x.{column} IS NOT NULL"
                f" AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.id = x.{column})") or 0)
        for table, column in [("attempts", "task_run_id"), ("log_chunks", "task_run_id"),
                              ("task_edges", "up_id"), ("task_edges", "down_id")]:
            out[f"{table}.{column}"] = int(tx.scalar(
                f"SELECT COUNT(*) FROM {table} x WHERE NOT EXISTS"
                f" (SELECT 1 FROM task_runs t WHERE t.id = x.{column})") or 0)
        out["runs.parent_task_run_id"] = int(tx.scalar(
            "SELECT COUNT(*) FROM runs r WHERE r.parent_task_run_id IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM task_runs t WHERE t.id = r.parent_task_run_id)") or 0)
        out["task_runs.child_run_id"] = int(tx.scalar(
            "SELECT COUNT(*) FROM task_runs t WHERE t.child_run_id IS NOT NULL AND NOT EXISTS"
            " (SELECT 1 FROM runs r WHERE r.id = t.child_run_id)") or 0)
    return {k: v for k, v in out.items() if v}


def child_of(store: Store, run_id: int) -> int | None:
    with store.read() as tx:
        value = tx.scalar("SELECT child_run_id FROM task_runs WHERE run_id = :r"
                          " AND task = 'sub'", {"r": run_id})
    return None if value is None else int(value)


def run_ids(store: Store) -> list[int]:
    with store.read() as tx:
        return [int(i) for (i,) in tx.all("SELECT id FROM runs ORDER BY id")]


def test_a_sub_job_run_is_purged_with_its_parent_not_while_the_parent_runs(
        engine: Engine, store: Store) -> None:
    apply_job(engine, CHILD)
    parent = start_run(engine, PARENT)

    def child_done(_: object) -> bool:
        child = child_of(store, parent)
        return child is not None and engine.run_state(child) == "succeeded"

    # The child ends; the parent's next task waits for an agent with the label `late`.
    run_agent(engine, parent, until=child_done)
    child = child_of(store, parent)
    assert engine.run_state(parent) == "running"
    later = time.time() + 3600  # every finished run is past this retention
    with store.read() as tx:
        assert reports.purgeable(tx, later) == []
    assert reports.purge(store, later) == 0
    assert run_ids(store) == [parent, child] and leftovers(store) == {}

    Agent(engine, slots=2, root_run_id=parent, labels=["late"]).run(
        until=lambda _: engine.run_state(parent) == "succeeded")
    assert engine.run_state(parent) == "succeeded"
    with store.read() as tx:
        assert reports.purgeable(tx, later) == [parent, child]  # what purge deletes
    assert reports.purge(store, later) == 2
    assert run_ids(store) == [] and leftovers(store) == {}
    with store.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM task_runs") == 0
        assert tx.scalar("SELECT COUNT(*) FROM log_chunks") == 0


def test_batches_count_sub_job_runs_and_keep_trees_whole(engine: Engine, store: Store) -> None:
    """A batch counts the runs it deletes, sub-job runs included, and never splits a tree."""
    apply_job(engine, CHILD)
    tops = []
    for _ in range(3):
        top = start_run(engine, PARENT.replace(", agent_labels: [late]", ""))
        run_agent(engine, top)
        tops.append(top)
    everything = run_ids(store)
    assert len(everything) == 6
    later = time.time() + 3600
    with store.read() as tx:
        assert reports.purgeable(tx, later) == everything
    assert reports.purge(store, later, batch=3, pause=0) == 6
    assert run_ids(store) == [] and leftovers(store) == {}


def test_a_run_retried_while_purge_deletes_it_is_kept(engine: Engine, store: Store) -> None:
    """`retry` holds the run's row and turns it running while purge re-checks its batch: the
    re-check waits for it and lets the run go (it used to delete the run just retried)."""
    if store.backend != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has one writer at a time")
    apply_job(engine, CHILD)
    run_id = start_run(engine, CHILD)
    run_agent(engine, run_id)
    with psycopg.connect(store.url, autocommit=False) as retry:
        # What `retry` does first: lock the finished run and start it again.
        retry.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (run_id,))
        retry.execute("UPDATE runs SET state = 'running', finished_at = NULL WHERE id = %s",
                      (run_id,))
        out: dict[str, Any] = {}

        def purge() -> None:
            try:
                out["purged"] = reports.purge(store, time.time() + 3600, pause=0)
            except BaseException as exc:  # surfaced below
                out["error"] = exc

        thread = threading.Thread(target=purge, daemon=True)
        thread.start()
        waiting: list[Any] = []
        deadline = time.monotonic() + 30
        while not waiting and time.monotonic() < deadline and thread.is_alive():
            time.sleep(0.05)
            waiting = retry.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()").fetchall()
        assert waiting, f"purge never waited for the retry ({out})"
        retry.commit()
        thread.join(30)
    assert out == {"purged": 0}, out
    assert run_ids(store) == [run_id] and leftovers(store) == {}
    with store.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM task_runs WHERE run_id = :r", {"r": run_id}) > 0
