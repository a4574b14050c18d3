"""An agent rides out store errors: outcomes wait until they can be recorded, claims whose
commit reply was lost are given back, and nothing runs twice. Told to stop while the store is
away, an agent and a run's cancel say so in one line each, with no traceback."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from engine_helpers import attempts, log_text, run_agent, start_run, tasks

from taskplan.agent import Agent
from taskplan.cli.execute import cancel_quietly
from taskplan.engine import Engine, StepResult
from taskplan.errors import StoreUnavailableError
from taskplan.store.db import Store
from taskplan.store.dialects.sqlite import FILE_CHECK_EVERY


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


# -- a SQLite store file moved away while in use (the process is told to stop meanwhile) ------

JOB = """
    job: outage
    tasks:
      a: {shell: "sleep 0.3"}
    """


def move_store(src: Path, dst: Path) -> None:
    """Move the store's files (with its -wal and -shm) from one folder to the other."""
    for f in sorted(src.glob("s.db*")):
        f.rename(dst / f.name)
    time.sleep(FILE_CHECK_EVERY * 1.5)  # a thread looks at the file at most that often


def sqlite_store(tmp_path: Path) -> tuple[Store, Path]:
    away = tmp_path / "away"
    away.mkdir()
    return Store(f"sqlite:///{tmp_path / 's.db'}"), away


def test_a_cancel_waits_for_the_store_then_says_so_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store, away = sqlite_store(tmp_path)
    engine = Engine(store)
    run_id = start_run(engine, JOB)
    move_store(tmp_path, away)
    cancel_quietly(engine, run_id, patience=0.3)  # (it raised StoreUnavailableError)
    assert capsys.readouterr().err.splitlines() == [
        f"taskplan: run {run_id} not cancelled: SQLite store {tmp_path / 's.db'} is gone"
        " (deleted or moved while in use); nothing is written until it is back"]
    # Back while it is still waiting: the run ends cancelled, silently.
    back = threading.Thread(target=move_store, args=(away, tmp_path))
    back.start()
    cancel_quietly(engine, run_id, patience=60.0)
    back.join()
    assert capsys.readouterr().err == ""
    assert engine.run_state(run_id) == "cancelled"
    store.close()


def test_an_agent_leaving_while_the_store_is_away_says_so_without_a_traceback(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, away = sqlite_store(tmp_path)
    engine = Engine(store)
    run_id = start_run(engine, JOB)

    class StoreBack(logging.Handler):
        """The store comes back once the agent has said it could not check, so that the
        agent records its attempt and signs off at once rather than after its patience."""

        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("cannot check for cancelled attempts"):
                move_store(away, tmp_path)

    def leave_once_running(agent: Agent) -> bool:
        if not agent.busy:
            return False
        move_store(tmp_path, away)
        return True

    back = StoreBack()
    agent_log = logging.getLogger("taskplan.agent")
    agent_log.addHandler(back)
    try:
        with caplog.at_level(logging.WARNING, logger="taskplan.agent"):
            run_agent(engine, run_id, slots=1, until=leave_once_running)
    finally:
        agent_log.removeHandler(back)
    [said] = [r for r in caplog.records if "cancelled attempts" in r.getMessage()]
    assert said.exc_info is None, said.exc_info  # (it was logged with a traceback)
    assert said.getMessage() == (
        f"cannot check for cancelled attempts on exit: SQLite store {tmp_path / 's.db'} is"
        " gone (deleted or moved while in use); nothing is written until it is back")
    assert tasks(store, run_id)["a"]["state"] == "succeeded"  # recorded once it was back
    store.close()


class JumpingClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def test_an_attempt_ends_when_its_task_did_not_when_its_output_reached_the_store(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The last output of an attempt that ends while the store is away waits for it; the
    attempt's end (finished_at, so `status`'s TOOK and the durations forecasts learn from) is
    when the task ended, not when that output could be written."""
    store, away = sqlite_store(tmp_path)
    clock = JumpingClock()
    engine = Engine(store, clock=clock)
    go = tmp_path / "go"
    run_id = start_run(engine, f"""
        job: late_output
        tasks:
          a: {{shell: "while [ ! -f {go} ]; do sleep 0.02; done; echo out"}}
        """)
    jumped_at: list[float] = []
    agent = Agent(engine, slots=1, root_run_id=run_id)

    def drive() -> None:
        deadline = time.monotonic() + 60
        while not agent.busy:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        move_store(tmp_path, away)
        go.touch()
        while not any("storing an attempt's output" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        # The task has ended and its slot waits to store the output: an hour goes by.
        clock.offset += 3600.0
        jumped_at.append(clock())
        move_store(away, tmp_path)

    with caplog.at_level(logging.WARNING):
        driver = threading.Thread(target=drive)
        driver.start()
        agent.run(until=lambda a: run_id in a.finished_runs)
        driver.join(10)
    a = tasks(store, run_id)["a"]
    assert a["state"] == "succeeded"
    [tried] = attempts(store, a["id"])
    assert tried["finished_at"] < jumped_at[0] - 3000, (tried, jumped_at)
    assert a["finished_at"] < jumped_at[0] - 3000, (a, jumped_at)
    assert log_text(store, a["id"]) == "out\n"
    store.close()
