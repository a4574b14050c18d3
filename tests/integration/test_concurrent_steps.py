"""Two agents stepping on one run at the same moment: limits hold, a cancel is not starved,
and a step whose reply was lost cannot commit behind the agent's back.

On PostgreSQL the common step is one server-side call, and two agents' steps of one run
overlap (see docs/architecture.md); on SQLite writers take turns, so the same checks hold
trivially there.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from engine_helpers import apply_job

from taskplan.engine import Claim, Engine, Outcome
from taskplan.errors import StoreUnavailableError
from taskplan.model import TaskState
from taskplan.store.db import Store
from taskplan.store.pgserver import RUN_LOCK_CLASS

FANOUT = """
job: {name}
{limit}
tasks:
  a: {{python: "tpjobs:record"}}
  b: {{python: "tpjobs:record"}}
{children}
"""


def _job(name: str, limit: str, pool: str = "") -> str:
    children = "".join(
        f"  {up}{i}: {{python: \"tpjobs:record\", depends_on: [{up}]{pool}}}\n"
        for up in "ab" for i in range(1, 6))
    return FANOUT.format(name=name, limit=limit, children=children)


def _ok(claim: Claim) -> tuple[Claim, Outcome]:
    return claim, Outcome(TaskState.SUCCEEDED, exit_code=0)


def _run_both(a: Callable[[], Any], b: Callable[[], Any]) -> None:
    """Two threads (each with its own connections, as two agents) released at once."""
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def go(fn: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            fn()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=go, args=(fn,)) for fn in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def go() -> None:
        try:
            out["value"] = fn()
        except BaseException as exc:
            out["error"] = exc

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    return thread, out


@pytest.mark.parametrize("limit", ["max_parallel: 4", "pools: {p: 3}"])
def test_overlapping_steps_keep_max_parallel_and_pools(engine: Engine, store: Store,
                                                       limit: str) -> None:
    pooled = limit.startswith("pools")
    version_id = apply_job(engine, _job("limits", limit, ", pool: p" if pooled else ""))
    a_agent = engine.register_agent("A", "h", 1, 4, 3600.0)
    b_agent = engine.register_agent("B", "h", 2, 4, 3600.0)
    cap = 3 if pooled else 4
    for _ in range(12):
        run_id = engine.create_run(version_id)
        first = engine.step(a_agent, [], 1, run_id).claims
        second = engine.step(b_agent, [], 1, run_id).claims
        # Both finish one task, each making five ready, and both want four slots at once.
        _run_both(lambda f=first[0], r=run_id: engine.step(a_agent, [_ok(f)], 4, r),
                  lambda f=second[0], r=run_id: engine.step(b_agent, [_ok(f)], 4, r))
        with store.read() as tx:
            running = tx.scalar("SELECT COUNT(*) FROM task_runs WHERE run_id = :r"
                                " AND state = 'running'", {"r": run_id})
            counter = tx.scalar("SELECT running FROM runs WHERE id = :r", {"r": run_id})
        assert running == counter
        assert running <= cap, f"{running} running over a limit of {cap}"


def test_a_cancel_waiting_for_a_run_holds_off_later_steps(engine: Engine, store: Store) -> None:
    if store.backend != "postgresql":
        pytest.skip("PostgreSQL only: SQLite writers take turns")
    version_id = apply_job(engine, _job("queue", ""))
    run_id = engine.create_run(version_id)
    agent = engine.register_agent("A", "h", 1, 4, 3600.0)
    claims = engine.step(agent, [], 2, run_id).claims
    with psycopg.connect(store.url, autocommit=False) as step_in_flight:
        # A step of another agent, in the middle of its transaction: it holds the run shared.
        step_in_flight.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)",
                               (RUN_LOCK_CLASS, run_id))
        cancel, cancel_out = _in_thread(lambda: engine.cancel_run(run_id))
        time.sleep(0.3)
        assert cancel.is_alive()  # waits for the step in flight
        later, later_out = _in_thread(lambda: engine.step(agent, [_ok(claims[0])], 0, run_id))
        time.sleep(0.3)
        assert later.is_alive()  # queued behind the cancel, not let past it
        step_in_flight.rollback()
    cancel.join(30)
    later.join(30)
    assert not cancel.is_alive() and not later.is_alive()
    assert engine.run_state(run_id) == "cancelled"
    assert later_out.get("error") is None, later_out
    assert cancel_out.get("error") is None, cancel_out


def test_a_claim_leaves_a_run_another_step_holds_instead_of_waiting(engine: Engine,
                                                                    store: Store) -> None:
    """A step on the general path holds the runs of its finishes when it claims: waiting there
    for a run another step holds closed cycles (each holding the run the other waits for, or
    a server step holding a run and waiting for the pool rows this one locked), and agents
    spent their turns in 'deadlock detected' until live ones lost their leases."""
    if store.backend != "postgresql":
        pytest.skip("PostgreSQL only: SQLite writers take turns")
    other = engine.create_run(apply_job(engine, _job("other", "")))
    run_id = engine.create_run(apply_job(engine, _job("mine", "defaults: {retries: 1}")))
    agent = engine.register_agent("A", "h", 1, 4, 3600.0)
    first = engine.step(agent, [], 1, run_id).claims[0]
    failed = Outcome(TaskState.FAILED, exit_code=1)
    with psycopg.connect(store.url, autocommit=False) as step_in_flight:
        # Another agent's step, in the middle of its transaction: it holds `other` shared.
        step_in_flight.execute("SELECT pg_advisory_xact_lock_shared(%s, %s)",
                               (RUN_LOCK_CLASS, other))
        # A failure: the general path, which locks `run_id` for it, then claims.
        thread, out = _in_thread(lambda: engine.step(agent, [(first, failed)], 4, None))
        waiting = 0
        deadline = time.monotonic() + 30
        while thread.is_alive() and not waiting and time.monotonic() < deadline:
            time.sleep(0.05)
            waiting = step_in_flight.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND classid = %s AND objid = %s", (RUN_LOCK_CLASS, other)).fetchone()[0]
        assert not waiting, "the claim waited for a run another step holds"
        thread.join(30)
        step_in_flight.rollback()
    assert out.get("error") is None, out
    result = out["value"]
    # Its free slots went to what it could lock: `b`, and `a` again (its retry is due now).
    assert sorted(c.task for c in result.claims) == ["a", "b"]
    assert {c.run_id for c in result.claims} == {run_id}
    assert result.contended  # the agent looks again soon: `other` still has ready work
    later = engine.step(agent, [], 2, None)
    assert sorted((c.run_id, c.task) for c in later.claims) == [(other, "a"), (other, "b")]


def test_a_step_cut_off_mid_call_cannot_commit_after_recovery(engine: Engine,
                                                              store: Store) -> None:
    if store.backend != "postgresql":
        pytest.skip("PostgreSQL only: the server-side step")
    version_id = apply_job(engine, _job("cut", ""))
    run_id = engine.create_run(version_id)
    agent = engine.register_agent("A", "h", 1, 4, 3600.0)
    first = engine.step(agent, [], 1, run_id).claims[0]
    with psycopg.connect(store.url, autocommit=False) as blocker:
        # Something holds the run's row, so the step's last UPDATE waits on the server.
        blocker.execute("SELECT id FROM runs WHERE id = %s FOR UPDATE", (run_id,))
        thread, out = _in_thread(lambda: engine.step(agent, [_ok(first)], 4, run_id))
        waiting: list[Any] = []
        deadline = time.monotonic() + 30
        while not waiting and time.monotonic() < deadline:
            time.sleep(0.05)
            waiting = blocker.execute(
                "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%%taskplan_step%%'").fetchall()
        assert waiting, "the step never waited on the server"
        _cut_client_side(store)  # a network cut: the client sees it, the server does not
        thread.join(30)
        assert isinstance(out.get("error"), StoreUnavailableError), out
        # The agent's recovery: fence the lost session, then give back unknown claims.
        assert store.fence_orphans() == 1
        assert engine.release_unstarted(agent, {first.task_run_id}) == 0
        blocker.commit()
    with store.read() as tx:
        states = dict(tx.all("SELECT task, state FROM task_runs WHERE run_id = :r",
                             {"r": run_id}))
    # Nothing of the cut step committed: `a` is still running for the agent to record again,
    # and nothing was claimed behind its back.
    assert states["a"] == "running"
    assert [t for t, s in states.items() if s == "running"] == ["a"]


def _cut_client_side(store: Store) -> None:
    """Shut the socket of the store's busy autocommit connection (the stepping thread's), as a
    network cut does; the server side is left waiting, unaware."""
    with store.dialect.conns_lock:
        conns = [c for c in store.dialect.conns if c.autocommit
                 and c.info.transaction_status == psycopg.pq.TransactionStatus.ACTIVE]
    assert len(conns) == 1
    socket.socket(fileno=os.dup(conns[0].fileno())).shutdown(socket.SHUT_RDWR)


def test_an_agent_whose_turns_keep_conflicting_still_renews_its_lease(
        engine: Engine, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its heartbeat came only after a step that went through: an agent meeting deadlocks turn
    after turn let its lease run out and was declared lost while alive."""
    from engine_helpers import wait_for

    from taskplan.agent import Agent
    from taskplan.errors import StoreConflictError

    agent = Agent(engine, slots=1, lease=1.5)
    agent_id = agent.register()

    def beat() -> float:
        with store.read() as tx:
            return float(tx.scalar("SELECT heartbeat_at FROM agents WHERE id = :a",
                                   {"a": agent_id}))

    def deadlock(*_: Any, **__: Any) -> Any:
        time.sleep(0.01)  # as a server takes a moment to find one
        raise StoreConflictError("deadlock detected (injected)")

    monkeypatch.setattr(engine, "step", deadlock)
    first = beat()
    thread = threading.Thread(target=agent.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: beat() > first, timeout=20.0, what="a renewed lease")
    finally:
        agent.drain()
        thread.join(20.0)
    assert not thread.is_alive()
    with store.read() as tx:
        assert tx.scalar("SELECT state FROM agents WHERE id = :a", {"a": agent_id}) != "lost"
