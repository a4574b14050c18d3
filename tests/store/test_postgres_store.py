"""PostgreSQL specifics of the store: wake-ups by LISTEN/NOTIFY, broken connections, idle cost,
and the claim query's plan. Backend-neutral helpers run on both backends."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from taskplan.agent import Agent
from taskplan.engine import Engine
from taskplan.errors import StoreUnavailableError
from taskplan.spec import load_job_text
from taskplan.store import ops
from taskplan.store.claims import STEP_CALL
from taskplan.store.db import NOTIFY_CHANNEL, Store
from taskplan.store.dialects.postgresql import to_pyformat


@pytest.fixture
def pg(store: Store) -> Store:
    if store.backend != "postgresql":
        pytest.skip("PostgreSQL only")
    return store


@pytest.fixture
def other(pg: Store) -> Iterator[Store]:
    """A second Store on the same database: what another process would hold."""
    st = Store(pg.url, migrate_schema=False)
    try:
        yield st
    finally:
        st.close()


def raw(store: Store) -> Any:
    return psycopg.connect(store.url, autocommit=True)


def test_many_returning_gives_every_row_in_order(store: Store) -> None:
    with store.tx() as tx:
        rows = tx.many_returning(
            "INSERT INTO pools (name, size) VALUES (:n, :s) RETURNING name, size",
            [{"n": f"p{i}", "s": i + 1} for i in range(5)])
    assert rows == [(f"p{i}", i + 1) for i in range(5)]


def test_a_nested_read_joins_the_open_write(store: Store) -> None:
    with store.tx() as tx:
        tx.run("INSERT INTO pools (name, size) VALUES ('a', 1)")
        with store.read() as inner:
            assert inner.scalar("SELECT size FROM pools WHERE name = 'a'") == 1
        tx.run("INSERT INTO pools (name, size) VALUES ('b', 2)")
    with store.read() as tx:
        assert tx.all("SELECT name FROM pools ORDER BY name") == [("a",), ("b",)]


def test_a_commit_in_one_process_wakes_a_waiter_in_another(pg: Store, other: Store) -> None:
    """The waiter returns because the NOTIFY reached it, not at its timeout (the latency is
    printed; benchmarks/ measures it)."""
    assert other.wait_listening()
    gen = other.waker.wait(-1, 0)  # absorb the wake every (re)LISTEN gives
    latencies = []
    for _ in range(20):
        woke = threading.Event()
        stamp: list[float] = []
        returned: list[int] = []

        def waiter(seen: int = gen, stamp: list[float] = stamp, woke: threading.Event = woke,
                   returned: list[int] = returned) -> None:
            returned.append(other.wait(seen, 30.0))
            stamp.append(time.perf_counter())
            woke.set()

        thread = threading.Thread(target=waiter)
        thread.start()
        time.sleep(0.01)
        with pg.tx() as tx:
            tx.run("UPDATE pools SET size = size WHERE name = 'x'")
            tx.wake = True
            t0 = time.perf_counter()
        assert woke.wait(60), "the other store was not woken"
        thread.join()
        assert returned[0] != gen  # a new generation: woken, not timed out
        latencies.append(stamp[0] - t0)
        gen = other.waker.generation
    latencies.sort()
    print(f"wake latency p50 {latencies[len(latencies) // 2] * 1000:.2f} ms")


def test_one_notify_per_transaction_and_none_without_wake(pg: Store) -> None:
    listener = raw(pg)
    listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
    with pg.tx() as tx:
        for i in range(50):
            tx.run("INSERT INTO pools (name, size) VALUES (:n, 1)", {"n": f"p{i}"})
            tx.wake = True
    with pg.tx() as tx:
        tx.run("UPDATE pools SET size = 2")
    got = list(listener.notifies(timeout=0.5))
    listener.close()
    assert len(got) == 1


def test_own_notifications_do_not_wake_this_process_twice(pg: Store) -> None:
    assert pg.wait_listening()
    pg.waker.wait(-1, 0)
    gen = pg.waker.generation
    with pg.tx() as tx:
        tx.wake = True
    after_commit = pg.waker.generation
    assert after_commit == gen + 1  # the in-process wake
    time.sleep(0.3)
    assert pg.waker.generation == after_commit  # the NOTIFY echo was ignored


def test_a_broken_connection_is_dropped_and_the_next_transaction_reconnects(
        pg: Store) -> None:
    with pg.read() as tx:
        pid = tx.scalar("SELECT pg_backend_pid()")
    with raw(pg) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.1)
    with pytest.raises(StoreUnavailableError, match="lost the connection"), pg.tx() as tx:
        tx.run("INSERT INTO pools (name, size) VALUES ('a', 1)")
    with pg.tx() as tx:
        tx.run("INSERT INTO pools (name, size) VALUES ('a', 1)")
        assert tx.scalar("SELECT pg_backend_pid()") != pid
    with pg.read() as tx:
        assert tx.all("SELECT name FROM pools") == [("a",)]


def test_the_listener_reconnects_and_wakes_after_losing_its_connection(
        pg: Store, other: Store) -> None:
    assert other.wait_listening()
    with raw(pg) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE query LIKE 'LISTEN%%' AND datname = current_database()")
    deadline = time.monotonic() + 5
    while other.dialect.listening.is_set() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert other.wait_listening(), "the listener did not come back"
    gen = other.waker.generation
    with pg.tx() as tx:
        tx.wake = True
    assert other.wait(gen, 5.0) != gen


def test_an_idle_agent_issues_at_most_one_query_per_second(
        pg: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    statements: list[str] = []

    def counting(sql: str) -> str:
        statements.append(sql)
        return to_pyformat(sql)

    agent = Agent(Engine(pg), slots=50, lease=30.0)
    stop_at = [0.0]
    thread = threading.Thread(
        target=agent.run, kwargs={"until": lambda a: 0 < stop_at[0] < time.monotonic()})
    thread.start()
    try:
        time.sleep(1.0)  # start-up: register, first claim, listener
        monkeypatch.setattr(pg.dialect, "translate", counting)  # each new Tx takes it
        time.sleep(3.0)
        idle = list(statements)
    finally:
        stop_at[0] = time.monotonic()
        pg.waker.notify()
        thread.join(10)
    print(f"idle agent: {len(idle)} statements in 3 s")
    assert len(idle) <= 3, idle


def test_the_claim_query_reads_its_index(pg: Store) -> None:
    with pg.tx() as tx:
        tx.run("INSERT INTO jobs (name, created_at, updated_at) VALUES ('j', 0, 0)")
        tx.run("INSERT INTO job_versions (job_id, version, spec_hash, definition, source_path,"
               " base_dir, created_at) VALUES (1, 1, 'h', '{}', '', '', 0)")
        tx.run("INSERT INTO runs (job_id, version_id, state, trigger, params, on_failure,"
               " created_at) SELECT 1, 1, 'running', 'manual', '{}', 'continue', 0"
               " FROM generate_series(1, 20)")
        tx.run(
            "INSERT INTO task_runs (run_id, task, kind, state, trigger_rule, rank, ready_at)"
            " SELECT 1 + g % 20, 't' || g, 'task',"
            " CASE WHEN g % 10 = 0 THEN 'ready' ELSE 'succeeded' END, 'all_success', 0, g"
            " FROM generate_series(1, 20000) g")
    with raw(pg) as conn:
        conn.execute("ANALYZE task_runs")
        for staged in (False, True):
            sql = ops.claim_candidates_sql(pg.dialect, staged=staged)
            sql = sql.replace(":r", "7").replace(":k", "4").replace(":ms", "3")
            plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {sql}"))
            assert "ix_task_runs_run_id_state_rank_ready_at" in plan, plan
            assert "Sort" not in plan, plan  # the index gives the order: no sort of the run


def test_the_server_step_reads_task_runs_by_index_only(pg: Store) -> None:
    """Every statement of `taskplan_step`, as PostgreSQL plans it inside the function (generic
    plans after the fifth call, on a fresh table without statistics), reaches task runs
    through an index that fits: the primary key, or the claim index in claim order."""
    engine = Engine(pg)
    spec = load_job_text(
        "job: wide\ntasks:\n" + "".join(f"  t{i:03d}: {{python: 'm:f'}}\n" for i in range(400)),
        "wide.yaml", ".")
    version_id, _, _ = engine.apply(spec)
    run_id = engine.create_run(version_id)
    agent_id = engine.register_agent("a", "h", 1, 4, 60.0)
    plans: list[str] = []
    with raw(pg) as conn:
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
            done = [{"i": r[1], "r": r[2], "a": r[7], "t": time.time(), "x": None,
                     "res": None, "e": None} for r in rows if r[0] == "claim"]
            assert len(done) == 4, rows
    touching = [p for p in plans if " on task_runs" in p]
    claims = [p for p in touching if "t.state = 'ready'" in p and "LIMIT" in p]
    assert claims and touching
    for plan in claims:
        assert "ix_task_runs_run_id_state_rank_ready_at" in plan and "Sort" not in plan, plan
    for plan in touching:
        assert "Seq Scan on task_runs" not in plan, plan
        assert "ix_task_runs_agent_id_state" not in plan, plan
    assert engine.run_state(run_id) == "running"
    with pg.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM task_runs WHERE run_id = :r"
                         " AND state = 'succeeded'", {"r": run_id}) == 28


def test_a_broken_server_call_connection_is_dropped_and_replaced(pg: Store) -> None:
    assert pg.call("SELECT pg_backend_pid()", {}, wake=False) is not None
    pid = pg.call("SELECT pg_backend_pid()", {}, wake=False)
    assert pid is not None
    with raw(pg) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid[0][0],))
    time.sleep(0.1)
    with pytest.raises(StoreUnavailableError, match="lost the connection"):
        pg.call("SELECT 1", {}, wake=False)
    again = pg.call("SELECT pg_backend_pid()", {}, wake=False)
    assert again is not None and again[0][0] != pid[0][0]
    with pg.tx():
        assert pg.call("SELECT 1", {}, wake=False) is None  # a transaction is open here


def test_a_server_idle_session_timeout_does_not_drop_the_stores_connections(pg: Store) -> None:
    """A server (or database) with idle_session_timeout set dropped every connection the store
    kept between turns: an idle agent met a dropped connection at each heartbeat, took it for
    an outage, and never got to recover others' work. The store's sessions opt out of it."""
    with raw(pg) as conn:
        name = conn.execute("SELECT current_database()").fetchone()[0]
        conn.execute(f'ALTER DATABASE "{name}" SET idle_session_timeout = 1000')
    st = Store(pg.url, migrate_schema=False)
    try:
        with st.read() as tx:
            assert tx.scalar("SELECT 1") == 1
        time.sleep(1.5)  # past the server's limit, as an agent between two beats
        with st.read() as tx:
            assert tx.scalar("SHOW idle_session_timeout") == "0"
    finally:
        st.close()


def test_an_unreachable_server_is_one_line_naming_it() -> None:
    """libpq's reason spans two lines ("Connection refused" / a tab and "Is the server
    running..."), which a log split in two; it is one line, a sentence each."""
    with pytest.raises(StoreUnavailableError) as info:
        Store("postgresql://postgres@127.0.0.1:1/nothing_here", migrate_schema=False)
    text = str(info.value)
    assert "\n" not in text and "\t" not in text, text
    assert text.startswith("cannot reach the store postgresql://postgres@127.0.0.1:1/"), text
    assert "Connection refused; Is the server running" in text, text
