"""A dead agent's work comes back through lease expiry; a zombie's late finish is fenced off."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import apply_job, attempts, run_agent, tasks

from taskplan import procs
from taskplan.agent import Agent
from taskplan.engine import Claim, Engine, Outcome
from taskplan.model import TaskState
from taskplan.store.db import Store


class ManualClock:
    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _doomed_claim(engine: Engine, run_id: int, lease: float = 5.0) -> tuple[int, Claim]:
    """An agent that claims one task run and then dies (never heartbeats nor finishes)."""
    agent_id = engine.register_agent("doomed", "host", 1, 1, lease)
    step = engine.step(agent_id, [], 1, run_id)
    assert len(step.claims) == 1
    return agent_id, step.claims[0]


def test_expired_lease_is_retried_when_retries_remain(store: Store) -> None:
    clock = ManualClock()
    engine = Engine(store, clock=clock)
    run_id = engine.create_run(apply_job(engine, """
        job: reap_retry
        tasks:
          work: {python: "tpjobs:record", retries: 1, retry_delay: 1h}
        """))
    agent_id, _ = _doomed_claim(engine, run_id)
    clock.now += 4.0
    assert engine.reap() == 0  # lease not yet expired
    clock.now += 2.0
    assert engine.reap() == 1
    assert engine.reap() == 0  # once only
    got = tasks(store, run_id)["work"]
    # Recovered at once (no retry_delay for a lost agent) and ready for another agent.
    assert (got["state"], got["attempts"]) == ("ready", 1)
    (lost,) = attempts(store, got["id"])
    assert (lost["state"], lost["error"]) == ("lost", "agent lost")
    with store.read() as tx:
        assert tx.scalar("SELECT state FROM agents WHERE id = :a", {"a": agent_id}) == "lost"
    assert engine.heartbeat(agent_id, 5.0) is False  # a lost agent cannot come back

    run_agent(engine, run_id, slots=1)
    got = tasks(store, run_id)["work"]
    assert (got["state"], got["attempts"]) == ("succeeded", 2)
    assert [a["state"] for a in attempts(store, got["id"])] == ["lost", "succeeded"]
    assert engine.run_state(run_id) == "succeeded"


def test_expired_lease_fails_the_task_when_no_retries_remain(store: Store) -> None:
    clock = ManualClock()
    engine = Engine(store, clock=clock)
    run_id = engine.create_run(apply_job(engine, """
        job: reap_fail
        tasks:
          work: {python: "tpjobs:record"}
          after: {python: "tpjobs:record", depends_on: [work]}
        """))
    _doomed_claim(engine, run_id)
    clock.now += 60.0
    assert engine.reap() == 1
    got = tasks(store, run_id)
    assert got["work"]["state"] == "failed"
    assert got["work"]["error"] == "agent lost"
    assert got["after"]["state"] == "upstream_failed"
    assert engine.run_state(run_id) == "failed"


def test_live_agent_heartbeat_keeps_its_lease(store: Store) -> None:
    clock = ManualClock()
    engine = Engine(store, clock=clock)
    run_id = engine.create_run(apply_job(engine, """
        job: reap_alive
        tasks:
          work: {python: "tpjobs:record"}
        """))
    agent_id, _ = _doomed_claim(engine, run_id)
    for _ in range(5):
        clock.now += 4.0
        assert engine.heartbeat(agent_id, 5.0) is True
        assert engine.reap() == 0
    assert tasks(store, run_id)["work"]["state"] == "running"


def test_stale_attempt_finish_changes_nothing(store: Store) -> None:
    clock = ManualClock()
    engine = Engine(store, clock=clock)
    run_id = engine.create_run(apply_job(engine, """
        job: fencing
        tasks:
          work: {python: "tpjobs:record", retries: 2}
        """))
    zombie_id, old = _doomed_claim(engine, run_id)
    clock.now += 60.0
    assert engine.reap() == 1
    heir_id = engine.register_agent("heir", "host", 2, 1, 30.0)
    (new,) = engine.step(heir_id, [], 1, run_id).claims
    assert (new.task_run_id, new.attempt) == (old.task_run_id, 2)

    def snapshot() -> tuple[object, ...]:
        with store.read() as tx:
            return (tx.all("SELECT * FROM task_runs WHERE run_id = :r ORDER BY id",
                           {"r": run_id}),
                    tx.all("SELECT * FROM attempts WHERE run_id = :r ORDER BY attempt",
                           {"r": run_id}),
                    tx.all("SELECT * FROM runs WHERE id = :r", {"r": run_id}),
                    tx.scalar("SELECT COUNT(*) FROM events"))

    before = snapshot()
    late = engine.step(zombie_id, [(old, Outcome(TaskState.SUCCEEDED, result={"z": 1}))], 0)
    assert late.stale == [new.task_run_id]
    late = engine.step(zombie_id, [(old, Outcome(TaskState.FAILED, error="zombie"))], 0)
    assert late.stale == [new.task_run_id]
    assert snapshot() == before

    done = engine.step(heir_id, [(new, Outcome(TaskState.SUCCEEDED, result={"ok": 2}))], 0)
    assert done.stale == []
    assert done.finished_runs == [(run_id, "succeeded")]
    got = tasks(store, run_id)["work"]
    assert (got["state"], got["attempts"], got["result"]) == ("succeeded", 2, {"ok": 2})
    assert [a["state"] for a in attempts(store, got["id"])] == ["lost", "succeeded"]


def test_agent_of_a_dead_process_on_this_machine_is_reaped_at_once(store: Store) -> None:
    """No waiting for the lease: the owner's pid is gone (or is another process now)."""
    clock = ManualClock()
    engine = Engine(store, clock=clock)
    run_id = engine.create_run(apply_job(engine, """
        job: reap_pid
        tasks:
          work: {python: "tpjobs:record", retries: 1}
        """))
    owner = subprocess.Popen(["sleep", "60"])
    try:
        agent_id = engine.register_agent("doomed", "host", owner.pid, 1, 300.0)
        assert len(engine.step(agent_id, [], 1, run_id).claims) == 1
        assert engine.reap() == 0  # its process runs: the lease decides
    finally:
        owner.kill()
        owner.wait()
    assert engine.reap() == 1  # the lease has 300 s left
    got = tasks(store, run_id)["work"]
    assert (got["state"], got["attempts"]) == ("ready", 1)
    with store.read() as tx:
        assert tx.scalar("SELECT state FROM agents WHERE id = :a", {"a": agent_id}) == "lost"


def test_reused_pid_is_not_mistaken_for_the_owner() -> None:
    me = os.getpid()
    recorded = procs.identity(me)
    assert recorded is not None and not procs.is_gone(me, recorded)
    # The same pid, started at another time: another process that reused the number.
    head, _, ticks = recorded.rpartition("/")
    assert procs.is_gone(me, f"{head}/{int(ticks) + 1}")
    # Another machine (or pid namespace): nothing is known, so not gone.
    assert not procs.is_gone(me, f"other-boot/1/{ticks}")
    assert not procs.is_gone(me, None)


def test_exit_when_idle_waits_for_work_a_lease_will_hand_back(
        store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent on another machine claimed and went silent: an idle agent stays for the lease
    to end and runs the work, instead of leaving it stuck."""
    # A fresh agent trusts leases after one beat of a 30 s lease and 2 s (12 s); here 3 s.
    monkeypatch.setattr("taskplan.agent.CLOCK_JUMP_HOLD", 3.0)
    engine = Engine(store)
    run_id = engine.create_run(apply_job(engine, """
        job: idle_wait
        tasks:
          work: {python: "tpjobs:record", retries: 1}
        """))
    # A pid that cannot exist here: its process is unknown, as for another machine's agent.
    silent = engine.register_agent("elsewhere", "other-host", 2**22 + 1, 1, 3.0)
    assert len(engine.step(silent, [], 1, run_id).claims) == 1
    with store.read() as tx:
        assert tx.scalar("SELECT process FROM agents WHERE id = :a", {"a": silent}) is None
    agent = Agent(engine, slots=1, exit_when_idle=0.2, lease=3.0)
    steps = [0]
    step = engine.step

    def counted(*args: Any, **kwargs: Any) -> Any:
        steps[0] += 1
        return step(*args, **kwargs)

    engine.step = counted  # type: ignore[method-assign]
    agent.run()
    got = tasks(store, run_id)["work"]
    assert (got["state"], got["attempts"]) == ("succeeded", 2)
    assert engine.run_state(run_id) == "succeeded"
    # While it held on for the lease (3 s) it looked about once a second, not in a loop: a
    # timeout gone negative once made it step (a write transaction) tens of thousands of times.
    assert steps[0] < 100, steps


def test_exit_when_idle_waits_for_a_retry_to_come_due(store: Store) -> None:
    """A task failed and waits 2 s for its retry: an agent told to exit after 0.2 s idle left,
    and the run stayed running with nobody to retry it. A retry to come is work to come."""
    engine = Engine(store)
    run_id = engine.create_run(apply_job(engine, """
        job: idle_retry
        tasks:
          flaky: {shell: "test {{ run.attempt }} -gt 1", retries: 1, retry_delay: 2s}
        """))
    Agent(engine, slots=1, exit_when_idle=0.2).run()
    got = tasks(store, run_id)["flaky"]
    assert (got["state"], got["attempts"]) == ("succeeded", 2)
    assert engine.run_state(run_id) == "succeeded"


def test_an_unreadable_proc_entry_is_not_a_dead_process(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    """Only "no such process" means gone: /proc hidden from us (hidepid) says nothing."""
    me = os.getpid()
    recorded = procs.identity(me)
    (tmp_path / str(me)).mkdir()  # reading it fails, but not with "no such file"
    monkeypatch.setattr(procs, "_STAT", str(tmp_path / "{pid}"))
    assert not procs.is_gone(me, recorded)
    assert procs.is_gone(me + 1, recorded)  # no entry at all: gone


def test_status_says_what_a_silent_agent_of_another_machine_holds_waits_for(
        store: Store) -> None:
    """A task run still `running` for an agent elsewhere whose lease ran out: `status` says
    so, and what recovers it, rather than showing it running with nothing to say."""
    from taskplan.engine import waiting

    engine = Engine(store)
    run_id = engine.create_run(apply_job(engine, """
        job: silent_elsewhere
        tasks:
          work: {python: "tpjobs:record", retries: 1}
        """))
    silent = engine.register_agent("elsewhere", "other-host", 2**22 + 1, 1, 30.0)
    (claim,) = engine.step(silent, [], 1, run_id).claims
    with store.read() as tx:
        beat = float(tx.scalar("SELECT heartbeat_at FROM agents WHERE id = :a", {"a": silent}))
        assert waiting.orphans_in(tx, run_id, beat + 29) == {}  # its lease still runs
        later = beat + 31
        said = waiting.orphans_in(tx, run_id, later)
    since = waiting.clock(beat, later)
    assert said == {claim.task_run_id: (
        f"its agent elsewhere (other-host) has not renewed its lease since {since}; it is"
        " recovered as soon as an agent or `taskplan run` starts")}
    engine.register_agent("here", "this-host", 2**22 + 2, 1, 3600.0)
    with store.read() as tx:
        said = waiting.orphans_in(tx, run_id, later)
    assert said == {claim.task_run_id: (
        f"its agent elsewhere (other-host) has not renewed its lease since {since}; it is"
        " recovered at the next heartbeat of an agent alive")}


def test_status_says_a_run_pinned_to_a_dead_foreground_process_waits_for_recovery(
        store: Store) -> None:
    """A killed `taskplan run` leaves its run pinned to it until it is recovered: its ready
    task runs do not wait 'for a free slot of' a process that is gone."""
    from taskplan.engine import waiting

    engine = Engine(store)
    owner = subprocess.Popen(["sleep", "60"])
    try:
        fg = engine.register_agent("vm:fg", "this-host", owner.pid, 1, 30.0)
        run_id = engine.create_run(apply_job(engine, """
            job: pinned_dead
            tasks:
              a: {python: "tpjobs:record"}
              b: {python: "tpjobs:record"}
            """), pin_agent_id=fg)
        assert len(engine.step(fg, [], 1, run_id).claims) == 1
        assert set(waiting.explain(store, run_id).values()) == {
            "waiting for a free slot of vm:fg (the run's foreground process)"}
    finally:
        owner.kill()
        owner.wait()
    gone = (f"the run's foreground process (pid {owner.pid}) is gone; it is recovered as soon"
            " as an agent or `taskplan run` starts on this machine")
    assert set(waiting.explain(store, run_id).values()) == {gone}


def test_status_does_not_count_a_dead_agent_as_busy(store: Store) -> None:
    """The only agent was killed (its lease still runs): a ready task run does not wait 'for a
    free slot (every capable agent is busy)' of a process that is gone."""
    from taskplan.engine import waiting

    engine = Engine(store)
    owner = subprocess.Popen(["sleep", "60"])
    try:
        agent_id = engine.register_agent("killed", "this-host", owner.pid, 1, 30.0)
        run_id = engine.create_run(apply_job(engine, """
            job: dead_busy
            tasks:
              a: {python: "tpjobs:record"}
              b: {python: "tpjobs:record"}
            """))
        assert len(engine.step(agent_id, [], 1, run_id).claims) == 1
        assert set(waiting.explain(store, run_id).values()) == {
            "waiting for a free slot (every capable agent is busy)"}
    finally:
        owner.kill()
        owner.wait()
    assert set(waiting.explain(store, run_id).values()) == {"no agent alive"}


def test_run_detach_warns_when_the_only_agent_was_killed(store: Store) -> None:
    """`run --detach` warns "no agent alive" when none is: an agent killed a moment ago (its
    lease still running) will not take the run."""
    from taskplan.engine import waiting
    from taskplan.spec import load_job_text

    engine = Engine(store)
    spec = load_job_text("job: detached\ntasks:\n  a: {shell: 'true'}\n", "job.yaml", ".")
    owner = subprocess.Popen(["sleep", "60"])
    try:
        engine.register_agent("killed", "this-host", owner.pid, 1, 30.0)
        assert waiting.unserved(store, spec) == []
    finally:
        owner.kill()
        owner.wait()
    assert waiting.unserved(store, spec) == ["no agent alive"]
