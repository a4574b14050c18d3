"""A step records the successes of a run together (one fenced UPDATE, one counter bump; on
PostgreSQL one call of the server-side step function): the store must end up exactly as if
each finish had been recorded one by one by the general path."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from engine_helpers import apply_job, written_rows

from taskplan.engine import Claim, Engine, Outcome
from taskplan.model import TaskState
from taskplan.store.db import Store

JOB = """
job: batching_{policy}
on_failure: {policy}
tasks:
  w1: {{python: "tpjobs:record"}}
  w2: {{python: "tpjobs:record"}}
  w3: {{python: "tpjobs:record"}}
  w4: {{python: "tpjobs:record"}}
  bad: {{python: "tpjobs:fail", priority: -1}}
  flaky: {{python: "tpjobs:record", retries: 1}}
  slowflaky: {{python: "tpjobs:record", retries: 1, retry_delay: 5s}}
  c1: {{python: "tpjobs:record", depends_on: [w1, w2]}}
  c2: {{python: "tpjobs:record", depends_on: [c1, w3]}}
  cb: {{python: "tpjobs:record", depends_on: [bad]}}
  any: {{python: "tpjobs:record", depends_on: [bad, w4], trigger: all_done}}
  s1a: {{python: "tpjobs:record", stage: 1}}
  s1b: {{python: "tpjobs:record", stage: 1}}
  s2a: {{python: "tpjobs:record", stage: 2}}
  s2b: {{python: "tpjobs:record", stage: 2}}
"""


def OneByOne(store: Store, clock: Callable[[], float]) -> Engine:
    """The reference: every finish recorded on its own (the path before batching), in Python
    on every backend."""
    return Engine(store, clock, one_by_one=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _outcome(claim: Claim, clock: Clock) -> Outcome:
    ended = clock.now - 0.25
    if claim.task == "bad" or (claim.task in ("flaky", "slowflaky") and claim.attempt == 1):
        return Outcome(TaskState.FAILED, exit_code=1, error=f"{claim.task} failed",
                       ended_at=ended)
    return Outcome(TaskState.SUCCEEDED, exit_code=0, result={"t": claim.task}, ended_at=ended)


def _drive(engine: Engine, clock: Clock, version_id: int) -> tuple[int, list[Any]]:
    run_id = engine.create_run(version_id)
    agent_id = engine.register_agent("a", "host", 1, 4, 3600.0)
    pending: list[tuple[Claim, Outcome]] = []
    replay: list[tuple[Claim, Outcome]] = []
    results = []
    names: dict[int, str] = {}
    for _ in range(40):
        clock.now += 1.0
        engine.promote_retries()
        # A late duplicate of an attempt that was already recorded: fenced off.
        step = engine.step(agent_id, pending + replay, 4, run_id)
        replay = [(c, Outcome(TaskState.SUCCEEDED)) for c, o in pending
                  if o.state == TaskState.FAILED][:1]
        names.update((c.task_run_id, c.task) for c in step.claims)
        results.append((sorted(names[i] for i in step.stale),
                        [state for _, state in step.finished_runs], step.next_due,
                         sorted((c.task, c.attempt) for c in step.claims)))
        pending = [(c, _outcome(c, clock)) for c in step.claims]
        if step.finished_runs:
            break
    return run_id, results


def _snapshot(store: Store, run_id: int) -> dict[str, Any]:
    with store.read() as tx:
        names = {int(i): str(t) for i, t in tx.all(
            "SELECT id, task FROM task_runs WHERE run_id = :r", {"r": run_id})}
        return written_rows(tx, run_id, names, "state, attempts, max_attempts, pending_up,"
                            " failed_up, ready_at, started_at, finished_at, exit_code, result,"
                            " error, agent_id")


@pytest.mark.parametrize("policy", ["continue", "stop", "cancel", "finish_stage"])
def test_batched_step_writes_what_one_by_one_writes(store: Store, policy: str) -> None:
    got = []
    for cls in (OneByOne, Engine):
        clock = Clock()
        engine = cls(store, clock=clock)
        version_id = apply_job(engine, JOB.format(policy=policy))
        run_id, steps = _drive(engine, clock, version_id)
        got.append((steps, _snapshot(store, run_id)))
    assert got[1] == got[0]
    assert any(len(claims) > 1 for *_, claims in got[1][0])  # batches really happened
