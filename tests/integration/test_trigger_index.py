"""Who waits for a job's run: the cross-job trigger index read at every run's end."""

from __future__ import annotations

import logging

import pytest
from engine_helpers import run_agent
from test_scheduler import apply, runs

from taskplan.engine import Engine
from taskplan.store.db import Store


def test_a_definition_that_no_longer_loads_does_not_hold_up_other_runs(
        engine: Engine, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    apply(engine, "job: up\ntasks:\n  a: {shell: \"true\"}\n")
    apply(engine, "job: down\ntimezone: Europe/Paris\ntriggers:\n  - after: [up]\n"
          "tasks:\n  a: {shell: \"true\"}\n")
    # As if the system had lost the zone since `down` was applied.
    with store.tx() as tx:
        tx.run("UPDATE job_versions SET definition = REPLACE(definition, 'Europe/Paris',"
               " 'Nowhere/Gone')")
    fresh = Engine(store)  # nothing built yet in this process
    run_id = fresh.create_run(fresh.current_version("up"))
    with caplog.at_level(logging.WARNING, logger="taskplan.engine.triggers"):
        run_agent(fresh, run_id)
    assert [(r[1], r[2]) for r in runs(store)] == [("succeeded", "manual")]
    assert "job down: its triggers are ignored" in caplog.text


def test_a_trigger_on_a_job_deleted_with_force_never_fires(engine: Engine, store: Store) -> None:
    """`delete --force` of a job a trigger waits for: the trigger went on counting the
    deleted job's last run, so the next end of another upstream fired it, and `jobs` said it
    waited for `up (run 1 succeeded)` as if `up` could still run."""
    from taskplan.engine.triggers import trigger_waits

    apply(engine, "job: up\ntasks:\n  a: {shell: \"true\"}\n")
    apply(engine, "job: other\ntasks:\n  a: {shell: \"true\"}\n")
    down = apply(engine, "job: down\ntriggers:\n  - after: [up, other]\n"
                 "tasks:\n  a: {shell: \"true\"}\n")
    run_agent(engine, engine.create_run(engine.current_version("up")))
    engine.delete_job("up", force=True)
    run_agent(engine, engine.create_run(engine.current_version("other")))
    assert [(r[1], r[2]) for r in runs(store)] == [("succeeded", "manual")] * 2  # no `down`
    spec = engine.job_spec(down)
    with store.read() as tx:
        [wait] = trigger_waits(tx, down, spec.triggers, 0.0)
    assert wait["waiting"] == ["up (deleted)"]


def test_a_trigger_on_a_job_never_applied_says_so(engine: Engine, store: Store) -> None:
    """A trigger whose `after` names a job that was never applied (a typo) was shown waiting
    for `upp (no ended run)`, as if runs of it could come."""
    from taskplan.engine.triggers import trigger_waits

    down = apply(engine, "job: down\ntriggers:\n  - after: [upp]\n"
                 "tasks:\n  a: {shell: \"true\"}\n")
    spec = engine.job_spec(down)
    with store.read() as tx:
        [wait] = trigger_waits(tx, down, spec.triggers, 0.0)
    assert wait["waiting"] == ["upp (no job of that name)"]
    apply(engine, "job: upp\ntasks:\n  a: {shell: \"true\"}\n")  # applied later: it counts
    with store.read() as tx:
        [wait] = trigger_waits(tx, down, spec.triggers, 0.0)
    assert wait["waiting"] == ["upp (no ended run)"]
    run_agent(engine, engine.create_run(engine.current_version("upp")))
    assert sorted(r[2] for r in runs(store)) == ["manual", "trigger"]


def test_delete_force_cancels_without_firing_a_trigger_on_the_deleted_job(
        engine: Engine, store: Store) -> None:
    """`delete --force` cancelled the job's active run, then deleted it: that cancel ended the
    run while the job was still there, so a `status: finished` trigger on it fired a run of
    the dependent job, which a deleted job never does."""
    apply(engine, "job: up\ntasks:\n  a: {shell: \"sleep 30\"}\n")
    apply(engine, "job: down\ntriggers:\n  - after: [up]\n    status: finished\n"
          "tasks:\n  a: {shell: \"true\"}\n")
    queued_up = engine.create_run(engine.current_version("up"))  # no agent: never started
    gone = engine.delete_job("up", force=True)
    assert gone.cancelled == [queued_up]
    assert [(r[0], r[1], r[2]) for r in runs(store)] == [(queued_up, "cancelled", "manual")]
    with store.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM jobs WHERE name = 'up'"
                         " AND current_version_id IS NULL") == 1


def test_delete_force_purge_history_of_a_job_with_an_active_run(engine: Engine,
                                                                 store: Store) -> None:
    apply(engine, "job: up\ntasks:\n  a: {shell: \"sleep 30\"}\n")
    engine.create_run(engine.current_version("up"))
    gone = engine.delete_job("up", force=True, purge_history=True)
    assert gone.runs == 1 and runs(store) == []
    with store.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM jobs") == 0


def test_a_trigger_firing_is_logged_as_a_schedule_firing_is(
        engine: Engine, store: Store, caplog: pytest.LogCaptureFixture) -> None:
    apply(engine, "job: up\ntasks:\n  a: {shell: \"true\"}\n")
    apply(engine, "job: down\ntriggers:\n  - after: [up]\ntasks:\n  a: {shell: \"true\"}\n")
    up_run = engine.create_run(engine.current_version("up"))
    with caplog.at_level(logging.INFO, logger="taskplan.engine.triggers"):
        run_agent(engine, up_run)
    [made] = [r[0] for r in runs(store) if r[2] == "trigger"]
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "trigger_firing"]
    assert record.getMessage() == f"trigger: job down trigger 0 after up (run {up_run} ended):" \
                                  f" run {made}"
    assert (record.job, record.upstream_run_id, record.run_id) == ("down", up_run, made)


def test_a_fan_in_of_many_long_names_waits_for_every_upstream_again(engine: Engine,
                                                                    store: Store) -> None:
    """Past 500 characters the set of upstream runs is kept as a hash, and the next check had
    no set to compare with: after the first firing, every run of any one upstream fired the
    trigger again. Each upstream must run again, however long the set."""
    names = [f"upstream_extract_job_number_{i:02d}" for i in range(20)]
    for name in names:
        apply(engine, f"job: {name}\ntasks:\n  a: {{shell: \"true\"}}\n")
    apply(engine, f"job: fanin\ntriggers:\n  - after: [{', '.join(names)}]\n"
          "tasks:\n  a: {shell: \"true\"}\n")

    def triggered() -> int:
        return sum(1 for r in runs(store) if r[2] == "trigger")

    for name in names:
        run_agent(engine, engine.create_run(engine.current_version(name)))
    assert triggered() == 1
    run_agent(engine, engine.create_run(engine.current_version(names[5])))
    run_agent(engine, engine.create_run(engine.current_version(names[7])))
    assert triggered() == 1
    for name in names:
        if name not in (names[5], names[7]):
            run_agent(engine, engine.create_run(engine.current_version(name)))
    assert triggered() == 2
