"""Paused and deleted jobs.

Paused: schedules record their firings as skipped and make no run, cross-job triggers do not
fire, manual runs still start; resuming fires from then on without making up the pause.
Deleted: gone from listings and the scheduler, history kept or purged, refused while a run is
active unless forced."""

from __future__ import annotations

import pytest
from engine_helpers import apply_job, run_agent
from test_scheduler import T0, Clock, apply, fire, firings, job, runs, scheduler

from taskplan.engine import Engine
from taskplan.errors import ConflictError, NotFoundError
from taskplan.model import JobSpec
from taskplan.spec import load_job_text
from taskplan.store import reports
from taskplan.store.db import Store


def load(text: str) -> JobSpec:
    return load_job_text(text, "job.yaml", ".")


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 0.5)


@pytest.fixture
def eng(store: Store, clock: Clock) -> Engine:
    return Engine(store, clock=clock)


def test_a_paused_schedule_records_skips_and_resume_does_not_make_them_up(
        eng: Engine, store: Store, clock: Clock) -> None:
    apply(eng, job())
    s = scheduler(eng, clock)
    assert eng.pause_job("tick") is True
    assert eng.pause_job("tick") is False  # already paused: nothing changes
    for k in (1, 2, 3):
        clock.set(T0 + k)
        assert fire(s).runs == []
    assert runs(store) == []
    assert [(f, r) for f, r, _ in firings(store)] == [(T0 + 1, None), (T0 + 2, None),
                                                       (T0 + 3, None)]
    assert all("paused" in (n or "") for _, _, n in firings(store))
    with store.read() as tx:
        assert [j.paused for j in reports.jobs(tx)] == [True]
    # Manual runs are still allowed while paused.
    manual = eng.create_run(eng.current_version("tick"))
    assert eng.run_state(manual) == "running"
    assert eng.resume_job("tick") is True
    clock.set(T0 + 4)
    made = fire(s).runs
    assert len(made) == 1  # T0+4 only: the paused firings are not made up
    with store.read() as tx:
        assert [j.paused for j in reports.jobs(tx)] == [False]


def test_unknown_job_says_did_you_mean(eng: Engine) -> None:
    apply(eng, job("nightly"))
    with pytest.raises(NotFoundError, match="did you mean 'nightly'"):
        eng.pause_job("nightyl")
    with pytest.raises(NotFoundError, match="no job named 'zzz'"):
        eng.resume_job("zzz")
    # Job names are lowercase: the name in capitals is the guess.
    with pytest.raises(NotFoundError, match=r"^no job named 'Nightly'; did you mean 'nightly'"):
        eng.pause_job("Nightly")


def test_a_paused_job_is_not_triggered_until_resumed(eng: Engine, store: Store) -> None:
    up = apply_job(eng, """
        job: up
        tasks:
          a: {shell: "true"}
    """)
    apply_job(eng, """
        job: down
        triggers:
          - after: [up]
        tasks:
          b: {shell: "true"}
    """)

    def down_runs() -> int:
        with store.read() as tx:
            return int(tx.scalar("SELECT COUNT(*) FROM runs r JOIN jobs j ON j.id = r.job_id"
                                 " WHERE j.name = 'down'"))

    eng.pause_job("down")
    first = eng.create_run(up)
    run_agent(eng, first)
    assert down_runs() == 0
    with store.read() as tx:
        assert tx.scalar("SELECT COUNT(*) FROM trigger_firings") == 0
    eng.resume_job("down")
    second = eng.create_run(up)
    run_agent(eng, second)
    assert down_runs() == 1


def test_delete_keeps_history_and_a_reapply_continues_the_versions(
        eng: Engine, store: Store, clock: Clock) -> None:
    apply(eng, job())
    s = scheduler(eng, clock)
    clock.set(T0 + 1)
    [run] = fire(s).runs
    with pytest.raises(ConflictError, match=rf"active run\(s\) \({run}\).*--force"):
        eng.delete_job("tick")
    assert eng.run_state(run) == "running"  # a refusal changes nothing
    done = eng.delete_job("tick", force=True)
    assert done.cancelled == [run] and done.runs == 1 and not done.purged
    assert eng.run_state(run) == "cancelled"
    with store.read() as tx:
        assert reports.jobs(tx) == []
        assert [r.run_id for r in reports.list_runs(tx, job="tick")] == [run]
    clock.set(T0 + 2)
    assert fire(s).runs == []  # the scheduler forgot it
    with pytest.raises(NotFoundError):
        eng.pause_job("tick")
    with pytest.raises(NotFoundError):
        eng.delete_job("tick")
    assert eng.apply_preview(load(job())) == (2, True)
    apply(eng, job())
    with store.read() as tx:
        [info] = reports.jobs(tx)
    assert (info.version, info.versions) == (2, 2)


def test_delete_with_purge_history_removes_every_trace(eng: Engine, store: Store) -> None:
    version = apply_job(eng, """
        job: gone
        tasks:
          a: {shell: "echo hi"}
    """)
    run = eng.create_run(version)
    run_agent(eng, run)
    done = eng.delete_job("gone", purge_history=True)
    assert done.purged and done.runs == 1
    with store.read() as tx:
        for table in ("jobs", "job_versions", "runs", "task_runs", "attempts", "log_chunks",
                      "events"):
            assert tx.scalar(f"SELECT COUNT(*) FROM {table}") == 0, table


def test_one_paused_schedule_skips_while_the_others_fire(eng: Engine, store: Store,
                                                        clock: Clock) -> None:
    apply(eng, "job: two\non_misfire: run_all\non_overlap: allow\nschedules:\n"
               "  - {every: 1s, name: fast}\n  - {every: 2s, name: slow}\n"
               "tasks:\n  a:\n    shell: \"true\"\n")
    s = scheduler(eng, clock)
    assert eng.pause_schedule("two", "fast") is True
    assert eng.pause_schedule("two", "fast") is False
    assert eng.paused_schedules("two") == {"fast"}
    with pytest.raises(NotFoundError, match=r"no schedule 'fastt'.*fast, slow"):
        eng.pause_schedule("two", "fastt")
    clock.set(T0 + 2)
    made = fire(s).runs
    with store.read() as tx:
        rows = tx.all("SELECT schedule_key, run_id, note FROM schedule_firings"
                      " ORDER BY fire_at, schedule_key")
    assert [(k, r is not None) for k, r, _ in rows] == [("fast", False), ("fast", False),
                                                       ("slow", True)]
    assert all("schedule is paused" in n for k, _, n in rows if k == "fast")
    assert len(made) == 1
    assert eng.resume_schedule("two", "fast") is True
    clock.set(T0 + 3)
    assert len(fire(s).runs) == 1  # fast fires again from now on


def test_delete_force_cancels_a_queued_run_without_starting_it(eng: Engine, store: Store) -> None:
    """Cancelling the running run first used to start the queued one (its run-end effect),
    which an agent could then claim before it was cancelled in turn."""
    version = apply_job(eng, """
        job: busy
        tasks:
          a: {shell: "true"}
    """)
    running = eng.create_run(version)
    queued = eng.create_run(version, queued=True)
    done = eng.delete_job("busy", force=True)
    assert done.cancelled == [running, queued]
    assert (eng.run_state(running), eng.run_state(queued)) == ("cancelled", "cancelled")
    with store.read() as tx:
        assert tx.scalar("SELECT started_at FROM runs WHERE id = :r", {"r": queued}) is None
        assert tx.scalar("SELECT COUNT(*) FROM events WHERE run_id = :r AND state = 'running'",
                         {"r": queued}) == 0


@pytest.mark.parametrize("misfire", ["run_all", "run_once"])
def test_resume_does_not_make_up_a_pause_no_scheduler_saw(
        eng: Engine, store: Store, clock: Clock, misfire: str) -> None:
    """Paused, then resumed while no scheduler ran (it had crashed or was stopped): the
    firings of the pause were not recorded skipped by anyone, yet they are not made up by the
    scheduler that starts afterwards (they are not 'missed while no scheduler ran')."""
    apply(eng, job(misfire=misfire))
    s = scheduler(eng, clock)
    clock.set(T0 + 1)
    assert len(fire(s).runs) == 1
    s.release()  # the scheduler goes away
    assert eng.pause_job("tick") is True
    clock.set(T0 + 600)
    assert eng.resume_job("tick") is True
    clock.set(T0 + 600.5)
    assert fire(scheduler(eng, clock, "s2")).runs == []  # nothing fell due since the resume
    clock.set(T0 + 601)
    assert len(fire(scheduler(eng, clock, "s2")).runs) == 1  # and on time from then on
    assert len(runs(store)) == 2


def test_resuming_one_schedule_does_not_make_up_a_pause_no_scheduler_saw(
        eng: Engine, store: Store, clock: Clock) -> None:
    apply(eng, job(misfire="run_all"))
    s = scheduler(eng, clock)
    clock.set(T0 + 1)
    assert len(fire(s).runs) == 1
    s.release()
    assert eng.pause_schedule("tick", "0") is True
    clock.set(T0 + 600)
    assert eng.resume_schedule("tick", "0") is True
    clock.set(T0 + 600.5)
    assert fire(scheduler(eng, clock, "s2")).runs == []
    assert len(runs(store)) == 1
