"""An agent rides out store errors: outcomes wait until they can be recorded, claims whose
commit reply was lost are given back, and nothing runs twice."""

from __future__ import annotations

from typing import Any

import pytest
from engine_helpers import attempts, run_agent, start_run, tasks

from taskplan.engine import Engine, StepResult
from taskplan.errors import StoreUnavailableError
from taskplan.store.db import Store


def test_claims_lost_in_flight_go_back_to_ready_without_using_an_attempt(
        store: Store) -> None:
    engine = Engine(store)
    run_id = start_run(engine, """
        job: lost_claim
        tasks:
          only: {python: "tpjobs:record"}
        """)
    agent_id = engine.register_agent("a", "h", 1, 1, 30.0)
    claims = engine.step(agent_id, [], 1).claims
    assert [c.task for c in claims] == ["only"]
    assert engine.release_unstarted(agent_id, keep={claims[0].task_run_id}) == 0
    assert engine.release_unstarted(agent_id, keep=set()) == 1
    only = tasks(store, run_id)["only"]
    assert only["state"] == "ready"
    assert [(a["attempt"], a["state"]) for a in attempts(store, only["id"])] == [(1, "lost")]
    run_agent(engine, run_id, slots=1)
    only = tasks(store, run_id)["only"]
    assert only["state"] == "succeeded"
    assert only["result"]["attempt"] == 2  # retries: 0, yet the lost claim did not count


def test_an_agent_rides_out_failing_transactions(store: Store,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    engine = Engine(store)
    run_id = start_run(engine, """
        job: flaky_store
        tasks:
          a: {python: "tpjobs:record"}
          b: {python: "tpjobs:record", depends_on: [a]}
          c: {python: "tpjobs:record", depends_on: [a]}
          d: {python: "tpjobs:record", depends_on: [b, c]}
          e: {python: "tpjobs:record"}
          f: {python: "tpjobs:record"}
        """)
    real_step = engine.step
    calls = [0]

    def flaky_step(*args: Any, **kwargs: Any) -> StepResult:
        calls[0] += 1
        if calls[0] in (2, 4):
            raise StoreUnavailableError("connection refused (simulated)")
        if calls[0] in (3, 5, 6):
            real_step(*args, **kwargs)  # committed, but the reply never arrived
            raise StoreUnavailableError("server closed the connection (simulated)")
        return real_step(*args, **kwargs)

    monkeypatch.setattr(engine, "step", flaky_step)
    run_agent(engine, run_id, slots=2)
    assert calls[0] > 6
    found = tasks(store, run_id)
    assert {n: t["state"] for n, t in found.items()} == dict.fromkeys("abcdef", "succeeded")
    for name, task in found.items():
        tries = attempts(store, task["id"])
        # Every attempt but the last was a claim lost in flight, never started.
        assert [a["state"] for a in tries[:-1]] == ["lost"] * (len(tries) - 1), name
        assert tries[-1]["state"] == "succeeded"
        assert task["result"]["attempt"] == len(tries)
