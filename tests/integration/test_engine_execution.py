"""Retries and their spacing, timeouts that kill process groups, bounded attempt logs."""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

from engine_helpers import apply_job, attempts, log_text, pid_alive, run_job, tasks, wait_for

from taskplan.engine import Claim, Engine, Outcome
from taskplan.model import TaskState
from taskplan.store.db import Store


def test_retries_are_spaced_by_delay_and_backoff(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: retries
        tasks:
          bad:
            python: "tpjobs:fail"
            retries: 3
            retry_delay: 0.05s
            retry_backoff: 2
        """)
    got = tasks(store, run_id)["bad"]
    assert got["state"] == "failed"
    assert got["attempts"] == 4
    tries = attempts(store, got["id"])
    assert [a["state"] for a in tries] == ["failed"] * 4
    gaps = [b["started_at"] - a["finished_at"] for a, b in pairwise(tries)]
    for gap, wanted in zip(gaps, (0.05, 0.1, 0.2), strict=True):
        assert gap >= wanted - 1e-6, (gaps, wanted)


def test_retry_that_succeeds_ends_succeeded(engine: Engine, store: Store,
                                           tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    run_id, _ = run_job(engine, """
        job: eventually
        tasks:
          fix: {shell: "sleep 0.1; touch {{ params.marker }}"}
          flaky: {python: "tpjobs:flaky", retries: 5, retry_delay: 0.05s, retry_backoff: 1}
        """, params={"marker": str(marker)}, slots=2)
    got = tasks(store, run_id)["flaky"]
    assert got["state"] == "succeeded"
    assert 2 <= got["attempts"] <= 6
    assert got["result"] == {"attempt": got["attempts"]}
    tries = attempts(store, got["id"])
    assert [a["state"] for a in tries] == ["failed"] * (len(tries) - 1) + ["succeeded"]
    assert engine.run_state(run_id) == "succeeded"


def test_timeout_kills_the_whole_process_group(engine: Engine, store: Store,
                                              tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    done = tmp_path / "ran_to_the_end"
    run_id, _ = run_job(engine, """
        job: timeouts
        tasks:
          slow:
            shell: >-
              sleep 30 & echo $! > {{ params.pidfile }}.tmp;
              mv {{ params.pidfile }}.tmp {{ params.pidfile }}; wait; touch {{ params.done }}
            timeout: 0.3s
        """, params={"pidfile": str(pidfile), "done": str(done)})
    got = tasks(store, run_id)["slow"]
    assert got["state"] == "failed"
    assert "timed out" in got["error"]
    pid = int(pidfile.read_text())
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the grandchild sleep to die")
    assert not done.exists()


def test_attempt_log_is_bounded_with_tail_and_note(engine: Engine, store: Store) -> None:
    produced = 3 * 1024 * 1024
    run_id, _ = run_job(engine, """
        job: chatty
        tasks:
          talk: {python: "tpjobs:chatter"}
        """, params={"bytes": produced})
    got = tasks(store, run_id)["talk"]
    assert got["state"] == "succeeded"
    text = log_text(store, got["id"])
    mib = 1024 * 1024
    assert mib < len(text) <= mib + 64 * 1024 + 200
    assert text.startswith("x" * 1000)
    assert text.endswith("END-OF-OUTPUT\n")  # the tail is kept
    assert "characters of output dropped" in text
    head_end = text.index("\n[taskplan:")
    assert head_end == mib
    (attempt,) = attempts(store, got["id"])
    assert attempt["truncated"] is True
    assert attempt["output_bytes"] == produced + len("END-OF-OUTPUT\n")


class _Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _claim_one(engine: Engine, agent_id: int, run_id: int, clock: _Clock) -> Claim:
    """Let the task's retry fall due if it waits for one, then claim it."""
    due = engine.next_retry_due()
    if due is not None:
        clock.now = max(clock.now, due)
        engine.promote_retries()
    (claim,) = engine.step(agent_id, [], 1, run_id).claims
    return claim


def _fail(engine: Engine, agent_id: int, claim: Claim, clock: _Clock) -> float | None:
    """Report the claim failed; the delay before its retry, None if it failed for good."""
    clock.now += 1.0
    due = engine.step(agent_id, [(claim, Outcome(TaskState.FAILED, error="boom"))], 0,
                      claim.run_id).next_due
    return None if due is None else due - clock.now


_BACKOFF_JOB = """
    job: backoff
    tasks:
      work: {python: "tpjobs:record", retries: 2, retry_delay: 10s, retry_backoff: 3}
    """


def test_each_manual_retry_starts_the_backoff_again(store: Store) -> None:
    # The delay grows with the failed tries of one round, not with the attempts of the run:
    # after `taskplan retry`, the first retry waits retry_delay again.
    clock = _Clock()
    engine = Engine(store, clock=clock)
    run_id = engine.create_run(apply_job(engine, _BACKOFF_JOB))
    agent_id = engine.register_agent("a", "host", 1, 1, 60.0)
    for _round in range(3):
        delays = [_fail(engine, agent_id, _claim_one(engine, agent_id, run_id, clock), clock)
                  for _ in range(3)]
        assert delays == [10.0, 30.0, None]
        assert engine.run_state(run_id) == "failed"
        engine.retry_run(run_id)


def test_attempts_lost_with_an_agent_do_not_grow_the_backoff(store: Store) -> None:
    clock = _Clock()
    engine = Engine(store, clock=clock)
    run_id = engine.create_run(apply_job(engine, _BACKOFF_JOB.replace("retries: 2",
                                                                       "retries: 3")))
    agent_id = engine.register_agent("a", "host", 1, 1, 60.0)
    assert _fail(engine, agent_id, _claim_one(engine, agent_id, run_id, clock), clock) == 10.0
    # Claimed while the store was away and never started: given back, no try used.
    _claim_one(engine, agent_id, run_id, clock)
    assert engine.release_unstarted(agent_id, keep=()) == 1
    # Its agent died mid-attempt: the reaper hands it back at once.
    doomed = engine.register_agent("doomed", "host", 1, 1, 5.0)
    _claim_one(engine, doomed, run_id, clock)
    clock.now += 10.0
    assert engine.reap() == 1
    assert _fail(engine, agent_id, _claim_one(engine, agent_id, run_id, clock), clock) == 30.0
    got = tasks(store, run_id)["work"]
    assert [a["state"] for a in attempts(store, got["id"])] == [
        "failed", "lost", "lost", "failed"]


def test_a_task_cancelled_by_its_agent_stopping_does_not_let_its_run_succeed(
        engine: Engine) -> None:
    # An agent told to stop kills its running tasks and records them cancelled, while the
    # run itself was never cancelled (its process's cancel could not reach the store): the
    # run must not end succeeded with a task that never finished.
    run_id = engine.create_run(apply_job(engine, """
        job: cut_short
        tasks:
          first: {python: "tpjobs:record"}
          then: {python: "tpjobs:record", depends_on: [first]}
        """))
    agent_id = engine.register_agent("a", "host", 1, 1, 60.0)
    (claim,) = engine.step(agent_id, [], 1, run_id).claims
    engine.step(agent_id, [(claim, Outcome(TaskState.CANCELLED,
                                           error="cancelled: agent stopped"))], 0, run_id)
    assert engine.run_state(run_id) == "failed"


def test_a_nul_in_output_or_error_is_kept_as_text_on_every_store(engine: Engine,
                                                                  store: Store) -> None:
    # PostgreSQL keeps no NUL in text: the attempt failed "inside taskplan" (DataError) and
    # its output was lost. It is kept as U+FFFD there.
    run_id, _ = run_job(engine, """
        job: nul
        tasks:
          s: {shell: "printf 'a\\\\000b'"}
          p: {python: "tpjobs:fail_with_nul"}
        """)
    found = tasks(store, run_id)
    assert found["s"]["state"] == "succeeded"
    assert found["p"]["state"] == "failed"
    kept = "\ufffd" if store.dialect.name == "postgresql" else "\x00"
    assert log_text(store, found["s"]["id"]) == f"a{kept}b"
    assert found["p"]["error"] == f"ValueError: bad{kept}thing"
    assert log_text(store, found["p"]["id"]).startswith(f"out{kept}put\n")
