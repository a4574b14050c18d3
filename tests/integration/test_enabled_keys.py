"""`enabled: false` at job, schedule and task level, and job `tags:`, on a real store."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from engine_helpers import apply_job, run_agent, start_run, tasks
from test_scheduler import T0, Clock, apply, fire, runs, scheduler

from taskplan.engine import Engine
from taskplan.errors import ConflictError, NotFoundError
from taskplan.spec import load_job_text
from taskplan.store.db import Store
from taskplan.timing import next_firings

CHAIN = """
job: chain
tasks:
  a: {shell: "true"}
  b: {shell: "true", depends_on: [a], enabled: false}
  c: {shell: "true", depends_on: [b]}
  d: {shell: "true", depends_on: [b], trigger: one_failed}
  e: {shell: "true", stage: 1, enabled: false}
  f: {shell: "true", stage: 2}
"""


def test_a_disabled_task_is_skipped_and_counts_as_skipped_downstream(engine: Engine,
                                                                     store: Store) -> None:
    run_id = start_run(engine, CHAIN)
    run_agent(engine, run_id)
    states = {name: t["state"] for name, t in tasks(store, run_id).items()}
    # c waits for b, which ended skipped: a success for all_success; d (one_failed) is skipped.
    assert states == {"a": "succeeded", "b": "skipped", "c": "succeeded", "d": "skipped",
                      "e": "skipped", "f": "succeeded"}
    with store.read() as tx:
        assert tx.scalar("SELECT state FROM runs WHERE id = :r", {"r": run_id}) == "succeeded"
        # the disabled task never ran: no attempt
        assert tx.scalar("SELECT count(*) FROM attempts a JOIN task_runs t ON t.id ="
                         " a.task_run_id WHERE t.run_id = :r AND t.task = 'b'",
                         {"r": run_id}) == 0


def test_retry_keeps_disabled_tasks_skipped(engine: Engine, store: Store) -> None:
    run_id = start_run(engine, """
        job: flaky
        tasks:
          off: {shell: "true", enabled: false}
          boom: {shell: "exit 3", depends_on: [off]}
        """)
    run_agent(engine, run_id)
    assert engine.run_state(run_id) == "failed"
    assert engine.retry_run(run_id) == 1  # boom only
    run_agent(engine, run_id)
    assert tasks(store, run_id)["off"]["state"] == "skipped"


def test_retry_latest_skips_a_failed_task_the_current_version_disables(engine: Engine,
                                                                      store: Store) -> None:
    """A broken task turned off (`enabled: false`) and the run retried on that version: the
    task stayed failed, its dependant upstream_failed and the run failed again, as if
    nothing had been retried. It ends skipped, as the version's runs record it."""
    job = """
        job: broken
        tasks:
          a: {shell: "exit 1"}
          b: {shell: "true", depends_on: [a]}
          c: {shell: "true"}
        """
    run_id = start_run(engine, job)
    run_agent(engine, run_id)
    assert engine.run_state(run_id) == "failed"
    apply_job(engine, job.replace('{shell: "exit 1"}', '{shell: "exit 1", enabled: false}'))
    engine.retry_run(run_id, latest=True)
    run_agent(engine, run_id)
    got = tasks(store, run_id)
    assert {n: t["state"] for n, t in got.items()} == {
        "a": "skipped", "b": "succeeded", "c": "succeeded"}
    assert got["a"]["attempts"] == 1 and got["c"]["attempts"] == 1
    assert engine.run_state(run_id) == "succeeded"


def test_retry_latest_follows_the_current_versions_trigger_rules_and_priorities(
        engine: Engine, store: Store) -> None:
    """`retry --latest` onto a version where a cleanup task became `trigger: all_done`: the
    rerun judged it by the rule its run was created with, and it ended upstream_failed again
    instead of running."""
    job = """
        job: relaxed
        tasks:
          a: {shell: "exit 1"}
          cleanup: {shell: "true", depends_on: [a]}
        """
    run_id = start_run(engine, job)
    run_agent(engine, run_id)
    assert tasks(store, run_id)["cleanup"]["state"] == "upstream_failed"
    apply_job(engine, job.replace('depends_on: [a]}', 'depends_on: [a], trigger: all_done,'
                                                      ' priority: 7}'))
    engine.retry_run(run_id, latest=True)
    run_agent(engine, run_id)
    got = tasks(store, run_id)
    assert (got["a"]["state"], got["cleanup"]["state"]) == ("failed", "succeeded")
    with store.read() as tx:
        assert tx.one("SELECT trigger_rule, priority, rank FROM task_runs WHERE id = :i",
                      {"i": got["cleanup"]["id"]}) == ("all_done", 7, -7)


def test_retry_of_a_disabled_task_says_it_is_disabled_not_succeeded(engine: Engine) -> None:
    # "task off and what depends on it already succeeded" was said of a task that never ran.
    run_id = start_run(engine, """
        job: offish
        tasks:
          boom: {shell: "exit 3"}
          off: {shell: "true", enabled: false}
          down: {shell: "true", depends_on: [off]}
          alone: {shell: "true", enabled: false}
        """)
    run_agent(engine, run_id)
    assert engine.run_state(run_id) == "failed"
    with pytest.raises(ConflictError) as info:
        engine.retry_run(run_id, "off")
    assert str(info.value) == (f"run {run_id}: nothing to retry in task off and what depends"
                               " on it: off is disabled (enabled: false), the rest succeeded")
    with pytest.raises(ConflictError) as info:
        engine.retry_run(run_id, "alone")
    assert str(info.value) == (f"run {run_id}: nothing to retry in task alone and what"
                               " depends on it: alone is disabled (enabled: false)")
    with pytest.raises(NotFoundError) as info:
        engine.retry_run(run_id, "bom")
    assert str(info.value) == f"run {run_id} has no task 'bom'; did you mean 'boom'?"
    assert engine.run_state(run_id) == "failed"


def test_a_run_of_only_disabled_tasks_succeeds_at_once(engine: Engine) -> None:
    run_id = start_run(engine, """
        job: idle
        tasks:
          a: {shell: "exit 1", enabled: false}
        """)
    assert engine.run_state(run_id) == "succeeded"


_IDLE_HOURLY = """
job: idle
on_overlap: queue
schedules:
  - every: 10s
tasks:
  a: {shell: "exit 1", enabled: false}
"""


def test_queued_runs_of_only_disabled_tasks_succeed_when_they_start(store: Store) -> None:
    """A run of only disabled tasks created `queued` (a backfill's past its max_active, a
    schedule's behind an active run under on_overlap: queue) stayed `running` for good once
    started, with nothing left to end it, and every run queued behind it waited for ever."""
    from taskplan.backfill import backfill

    clock = Clock(T0 + 100.5)
    eng = Engine(store, clock=clock)
    apply(eng, _IDLE_HOURLY)
    backfill(eng, "idle", datetime.fromtimestamp(T0 + 10, UTC),
             datetime.fromtimestamp(T0 + 50, UTC), max_active=1)
    assert [(r[1], r[2]) for r in runs(store)] == [("succeeded", "backfill")] * 5

    # Behind an active run of an earlier version, under on_overlap: queue.
    apply(eng, _IDLE_HOURLY.replace('{shell: "exit 1", enabled: false}', '{shell: "exit 1"}'))
    s = scheduler(eng, clock)
    clock.set(T0 + 110.5)
    [busy] = fire(s).runs
    apply(eng, _IDLE_HOURLY)
    clock.set(T0 + 120.5)
    [idle] = fire(s).runs
    assert eng.run_state(idle) == "queued"
    eng.cancel_run(busy)  # its end starts the queued run, which has nothing to run
    assert eng.run_state(idle) == "succeeded"


def _job(extra: str) -> str:
    return ("job: tick\non_overlap: allow\nschedules:\n  - every: 1s\n"
            + extra + "tasks:\n  a:\n    shell: \"true\"\n")


@pytest.mark.parametrize("extra", ["enabled: false\n", "    enabled: false\n"])
def test_disabled_jobs_and_schedules_never_fire(store: Store, extra: str) -> None:
    clock = Clock(T0 + 0.5)
    eng = Engine(store, clock=clock)
    apply(eng, _job(extra))
    s = scheduler(eng, clock)
    clock.set(T0 + 5.0)
    assert fire(s).runs == []
    assert runs(store) == []


def test_a_disabled_job_is_not_started_by_its_trigger(engine: Engine, store: Store) -> None:
    apply(engine, "job: up\ntasks:\n  a: {shell: \"true\"}\n")
    apply(engine, "job: down\nenabled: false\ntriggers:\n  - after: [up]\n"
          "tasks:\n  a: {shell: \"true\"}\n")
    run_id = engine.create_run(engine.current_version("up"))
    run_agent(engine, run_id)
    assert [r[2] for r in runs(store)] == ["manual"]


def test_schedule_level_exceptions_and_tags_load() -> None:
    spec = load_job_text("""
job: tagged
tags: [Routine Maintenance, nightly]
timezone: UTC
schedules:
  - name: a
    at: "06:00"
    exceptions:
      - dates: [2030-01-02]
  - name: b
    at: "07:00"
    enabled: false
tasks:
  a: {shell: "true"}
""", "job.yaml", ".")
    assert spec.tags == ("Routine Maintenance", "nightly") and spec.enabled
    after = datetime(2030, 1, 1, 12, tzinfo=UTC)
    got = [(at.day, s.key) for at, s in next_firings(spec, after, 2)]
    assert got == [(3, "a"), (4, "a")]  # the 2nd is excepted for `a` only; `b` is disabled


def test_a_stage_of_disabled_tasks_still_holds_the_next_stage_back(engine: Engine,
                                                                 store: Store) -> None:
    """Every task of stage 3 disabled: stage 4 waited for nothing and ran at once, before
    stages 1 and 2 had ended; it waits for them through the empty stage's barrier."""
    run_id = start_run(engine, """
        job: staged
        tasks:
          s1: {shell: "test -f nowhere-$TASKPLAN_RUN_ID", stage: 1}
          s2: {shell: "true", stage: 2}
          s3: {shell: "true", stage: 3, enabled: false}
          s4: {shell: "true", stage: 4}
          s5: {shell: "true", stage: 5, trigger: all_done}
        """)
    assert {n: t["state"] for n, t in tasks(store, run_id).items()} == {
        "s1": "ready", "s2": "pending", "s3": "skipped", "s4": "pending", "s5": "pending"}
    run_agent(engine, run_id)
    # s1 failed: stage 2 did not run, and neither does stage 4 (all_success) behind the empty
    # stage 3; stage 5 (all_done) runs once stage 4 is resolved.
    assert {n: t["state"] for n, t in tasks(store, run_id).items()} == {
        "s1": "failed", "s2": "upstream_failed", "s3": "skipped", "s4": "upstream_failed",
        "s5": "succeeded"}
