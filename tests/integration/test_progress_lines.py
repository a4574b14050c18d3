"""The lines `taskplan run` prints on a pipe for what a halt ends, driven step by step: which
attempts end in the same step as the failure that halts their run is a race in a real run,
so here the steps are taken by hand, with the same engine and the same display."""

from __future__ import annotations

import re

import pytest
from engine_helpers import apply_job, tasks

from taskplan.cli.progress import PipeProgress
from taskplan.engine import Claim, Engine, Outcome, StepResult
from taskplan.model import TaskState
from taskplan.store.db import Store

FAILED = Outcome(TaskState.FAILED, exit_code=1, error="exit code 1")


def _started(engine: Engine, job: str, slots: int) -> tuple[int, int, dict[str, Claim]]:
    """A run of `job`, an agent of `slots` slots, and what its first step claimed, by task."""
    run_id = engine.create_run(apply_job(engine, job))
    agent = engine.register_agent("a", "h", 1, slots, 30.0)
    claims = {c.task: c for c in engine.step(agent, [], slots, run_id).claims}
    return run_id, agent, claims


def _printed(display: PipeProgress, capsys: pytest.CaptureFixture[str]) -> list[str]:
    display.update(final=True)
    out = capsys.readouterr().out
    return [" ".join(re.sub(r"^\S+ \S+\s+", "", ln).split()) for ln in out.splitlines()]


def test_a_task_cancelled_by_the_step_that_halts_its_run_gets_one_line(
        engine: Engine, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    # `f` and `r` fail in the same step; `f` (no retries) halts the run first and cancels `r`,
    # whose own failure is then fenced off: one line for `r`, `cancelled`, before the run's.
    run_id, agent, claims = _started(engine, """
        job: same_step
        on_failure: cancel
        tasks:
          f: {shell: "exit 1"}
          r: {shell: "exit 1", retries: 2}
        """, 2)
    with PipeProgress(run_id, store) as display:
        finished = [(claims["f"], FAILED), (claims["r"], FAILED)]
        result = engine.step(agent, finished, 0, run_id)
        display.observe(finished, result)
        lines = _printed(display, capsys)
    assert lines == ["f failed (exit code 1)", "r cancelled", f"run {run_id} failed"], lines
    assert tasks(store, run_id)["r"]["state"] == "cancelled"


def test_a_halted_runs_running_items_and_child_run_come_before_what_holds_them(
        engine: Engine, store: Store, capsys: pytest.CaptureFixture[str]) -> None:
    apply_job(engine, """
        job: kid
        tasks:
          k: {shell: "sleep 30"}
        """)
    run_id, agent, claims = _started(engine, """
        job: holder
        on_failure: cancel
        tasks:
          f: {shell: "exit 1"}
          each: {foreach: {values: [1, 2]}, shell: "sleep 30"}
          sub: {job: kid}
        """, 8)
    engine.expand_foreach(claims["each"], [[1, 2]])
    child = engine.start_child_run(claims["sub"], "kid", {})
    expanded = Outcome(TaskState.SUCCEEDED, expanded=True)
    items = engine.step(agent, [(claims["each"], expanded), (claims["sub"], expanded)], 8,
                        None).claims
    assert sorted(c.task for c in items) == ["each", "each", "k"]
    with PipeProgress(run_id, store) as display:
        result = engine.step(agent, [(claims["f"], FAILED)], 0, run_id)
        display.observe([(claims["f"], FAILED)], result)
        lines = _printed(display, capsys)
    # The child run's lines, then the items, then what held them, then the run.
    assert lines == [
        "f failed (exit code 1)", f"run {child}: k cancelled", f"run {child} cancelled",
        "each[0] cancelled", "each[1] cancelled", "each failed", "sub cancelled",
        f"run {run_id} failed"], lines


def test_a_retry_made_ready_but_not_started_when_its_run_stops_ends_failed(
        engine: Engine, store: Store) -> None:
    # docs/job-file.md: under `stop`, a task waiting for a retry does not retry and ends
    # failed, whether its retry was due later (`retrying`) or at once (made ready again).
    run_id, agent, claims = _started(engine, """
        job: stop_retry
        on_failure: stop
        tasks:
          r: {shell: "exit 1", retries: 2, retry_delay: 0}
          f: {shell: "exit 2"}
          slow: {shell: "sleep 30"}
        """, 3)
    result: StepResult = engine.step(agent, [(claims["r"], FAILED)], 0, run_id)
    assert result.retried == [claims["r"].task_run_id]
    engine.step(agent, [(claims["f"], FAILED)], 0, run_id)  # halts the run: stop
    engine.step(agent, [(claims["slow"], Outcome(TaskState.SUCCEEDED))], 0, run_id)
    got = tasks(store, run_id)
    assert (got["r"]["state"], got["r"]["attempts"]) == ("failed", 1)
    assert engine.run_state(run_id) == "failed"


def test_a_claim_given_back_unstarted_is_skipped_not_failed_when_its_run_stops(
        engine: Engine, store: Store) -> None:
    # Given back after a store outage, its attempt is `lost`, not failed: no retry is due, it
    # never started, and a halt skips it like any task that never started.
    run_id, agent, claims = _started(engine, """
        job: given_back
        on_failure: stop
        tasks:
          a: {shell: "exit 1"}
          b: {shell: "true", retries: 2}
        """, 2)
    assert engine.release_unstarted(agent, {claims["a"].task_run_id}) == 1
    engine.step(agent, [(claims["a"], FAILED)], 0, run_id)
    got = tasks(store, run_id)
    assert got["b"]["state"] == "skipped", got["b"]
    assert engine.run_state(run_id) == "failed"
