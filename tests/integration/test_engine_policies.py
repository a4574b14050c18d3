"""on_failure policies, stop/cancel from another thread, and retrying a finished run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from engine_helpers import (
    attempts,
    in_thread,
    pid_alive,
    run_agent,
    run_job,
    start_run,
    states,
    tasks,
    wait_for,
)

from taskplan.engine import Engine
from taskplan.errors import ConflictError
from taskplan.store.db import Store


def test_continue_lets_independent_branches_finish(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: pol_continue
        on_failure: continue
        params: {sleep_slow: 0.2}
        tasks:
          bad: {python: "tpjobs:fail"}
          after_bad: {python: "tpjobs:record", depends_on: [bad]}
          deep: {python: "tpjobs:record", depends_on: [after_bad]}
          slow: {python: "tpjobs:record"}
          after_slow: {python: "tpjobs:record", depends_on: [slow]}
        """, slots=2)
    got = tasks(store, run_id)
    assert {n: t["state"] for n, t in got.items()} == {
        "bad": "failed", "after_bad": "upstream_failed", "deep": "upstream_failed",
        "slow": "succeeded", "after_slow": "succeeded"}
    # after_slow started after bad had already failed: the failure did not stop the run.
    assert got["after_slow"]["started_at"] >= got["bad"]["finished_at"]
    assert engine.run_state(run_id) == "failed"


def test_stop_lets_running_finish_and_starts_nothing(engine: Engine, store: Store,
                                                     tmp_path: Path) -> None:
    started = tmp_path / "long_started"
    run_id, _ = run_job(engine, """
        job: pol_stop
        on_failure: stop
        tasks:
          bad: {python: "tpjobs:fail_when_file", priority: 10}
          long: {shell: "touch {{ params.flag }}; sleep 0.3", priority: 10}
          after_long: {python: "tpjobs:record", depends_on: [long]}
          other1: {python: "tpjobs:record"}
          other2: {python: "tpjobs:record"}
        """, params={"wait_for": str(started), "flag": str(started)}, slots=2)
    got = tasks(store, run_id)
    assert got["bad"]["state"] == "failed"
    assert got["long"]["state"] == "succeeded"
    assert got["long"]["finished_at"] > got["bad"]["finished_at"]
    for name in ("after_long", "other1", "other2"):
        assert got[name]["state"] == "skipped", name
        assert got[name]["attempts"] == 0, name
    assert engine.run_state(run_id) == "failed"


def test_finish_stage_starts_the_failed_stage_but_no_higher(engine: Engine,
                                                            store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: pol_finish_stage
        on_failure: finish_stage
        tasks:
          bad: {python: "tpjobs:fail", stage: 2, priority: 10}
          same1: {python: "tpjobs:record", stage: 2, priority: 5}
          same2: {python: "tpjobs:record", stage: 2}
          low: {python: "tpjobs:record", stage: 1}
          high1: {python: "tpjobs:record", stage: 3}
          high2: {python: "tpjobs:record", stage: 4}
        """, slots=1)
    got = tasks(store, run_id)
    assert got["low"]["state"] == "succeeded"
    assert got["bad"]["state"] == "failed"
    for name in ("same1", "same2"):
        # Still ready when `bad` failed (one slot), yet started: same stage.
        assert got[name]["state"] == "succeeded", name
        assert got[name]["started_at"] >= got["bad"]["finished_at"]
    for name in ("high1", "high2"):
        assert got[name]["attempts"] == 0, name
        assert got[name]["state"] == "skipped", name
    assert engine.run_state(run_id) == "failed"


def test_finish_stage_retries_the_stage_it_finishes(engine: Engine, store: Store) -> None:
    # A task of the failed stage that fails after the halt still has its retries: the stage
    # finishes as it would have; a higher stage's task is not retried, as it never starts.
    run_id, _ = run_job(engine, """
        job: pol_finish_stage_retry
        on_failure: finish_stage
        tasks:
          bad: {python: "tpjobs:fail", stage: 2, priority: 10}
          again: {shell: "test {{ run.attempt }} -gt 1", stage: 2, retries: 2, retry_delay: 0}
          high: {python: "tpjobs:record", stage: 3}
        """, slots=1)
    got = tasks(store, run_id)
    assert got["bad"]["state"] == "failed"
    assert got["again"]["started_at"] >= got["bad"]["finished_at"]
    assert (got["again"]["state"], got["again"]["attempts"]) == ("succeeded", 2)
    assert (got["high"]["state"], got["high"]["attempts"]) == ("skipped", 0)
    assert engine.run_state(run_id) == "failed"


def test_cancel_kills_running_tasks_now(engine: Engine, store: Store, tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    run_id, _ = run_job(engine, """
        job: pol_cancel
        on_failure: cancel
        tasks:
          bad: {python: "tpjobs:fail_when_file", priority: 10}
          long:
            shell: >-
              sleep 30 & echo $! > {{ params.pidfile }}.tmp;
              mv {{ params.pidfile }}.tmp {{ params.pidfile }}; wait
            priority: 10
          unstarted: {python: "tpjobs:record"}
        """, params={"wait_for": str(pidfile), "pidfile": str(pidfile)}, slots=2)
    got = tasks(store, run_id)
    assert got["bad"]["state"] == "failed"
    assert got["long"]["state"] == "cancelled"
    assert [a["state"] for a in attempts(store, got["long"]["id"])] == ["cancelled"]
    assert got["unstarted"]["state"] == "skipped"
    assert got["unstarted"]["attempts"] == 0
    assert engine.run_state(run_id) == "failed"
    pid = int(pidfile.read_text())
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the cancelled task's sleep to die")


def test_stop_run_from_another_thread_drains(engine: Engine, store: Store,
                                             tmp_path: Path) -> None:
    flag = tmp_path / "running"
    run_id = start_run(engine, """
        job: user_stop
        tasks:
          long: {shell: "touch {{ params.flag }}; sleep 0.3", priority: 10}
          after: {python: "tpjobs:record", depends_on: [long]}
          waiting: {python: "tpjobs:record"}
        """, params={"flag": str(flag)})
    answers: list[str] = []

    def stopper() -> None:
        wait_for(flag.exists, what="the long task to start")
        answers.append(engine.stop_run(run_id))

    thread = in_thread(stopper)
    run_agent(engine, run_id, slots=1)
    thread.join(5)
    assert answers == ["stopping"]
    assert states(store, run_id) == {
        "long": "succeeded", "after": "skipped", "waiting": "skipped"}
    assert engine.run_state(run_id) == "cancelled"


def test_a_task_failing_while_its_run_drains_leaves_its_dependants_skipped(
        engine: Engine, store: Store, tmp_path: Path) -> None:
    """After `taskplan stop`, tasks that never started end skipped. A running task that
    failed during the drain left its dependants upstream_failed instead (the run's
    on_failure being continue), as if the run had gone on."""
    flag = tmp_path / "running"
    run_id = start_run(engine, """
        job: user_stop_failing
        tasks:
          long: {shell: "touch {{ params.flag }}; sleep 0.3; exit 3"}
          after: {python: "tpjobs:record", depends_on: [long]}
          handler: {python: "tpjobs:record", depends_on: [long], trigger: one_failed}
          last: {python: "tpjobs:record", depends_on: [after], trigger: one_failed}
        """, params={"flag": str(flag)})
    answers: list[str] = []

    def stopper() -> None:
        wait_for(flag.exists, what="the long task to start")
        answers.append(engine.stop_run(run_id))

    thread = in_thread(stopper)
    run_agent(engine, run_id, slots=1)
    thread.join(5)
    assert answers == ["stopping"]
    assert states(store, run_id) == {
        "long": "failed", "after": "skipped", "handler": "skipped", "last": "skipped"}
    assert engine.run_state(run_id) == "cancelled"


def test_cancel_run_from_another_thread_kills(engine: Engine, store: Store,
                                              tmp_path: Path) -> None:
    pidfile = tmp_path / "sleeper.pid"
    done = tmp_path / "ran_to_the_end"
    run_id = start_run(engine, """
        job: user_cancel
        tasks:
          long:
            shell: >-
              sleep 30 & echo $! > {{ params.pidfile }}.tmp;
              mv {{ params.pidfile }}.tmp {{ params.pidfile }}; wait; touch {{ params.done }}
            priority: 10
          after: {python: "tpjobs:record", depends_on: [long]}
          waiting: {python: "tpjobs:record"}
        """, params={"pidfile": str(pidfile), "done": str(done)})
    answers: list[str] = []

    def canceller() -> None:
        wait_for(pidfile.exists, what="the long task to start")
        answers.append(engine.cancel_run(run_id))

    thread = in_thread(canceller)
    run_agent(engine, run_id, slots=1)
    thread.join(5)
    assert answers == ["cancelled"]
    assert states(store, run_id) == {
        "long": "cancelled", "after": "skipped", "waiting": "skipped"}
    assert engine.run_state(run_id) == "cancelled"
    pid = int(pidfile.read_text())
    wait_for(lambda: not pid_alive(pid), timeout=10, what="the cancelled task's sleep to die")
    assert not done.exists(), "the cancelled task ran to its end instead of being killed"


def test_retry_run_reruns_only_what_did_not_succeed(engine: Engine, store: Store,
                                                    tmp_path: Path) -> None:
    marker = tmp_path / "fixed"
    job = """
        job: retry_me
        tasks:
          produce: {python: "tpjobs:produce"}
          flaky: {python: "tpjobs:flaky", depends_on: [produce]}
          consume: {python: "tpjobs:consume", depends_on: [produce, flaky]}
          side: {python: "tpjobs:record"}
        """
    run_id, _ = run_job(engine, job, params={"marker": str(marker)})
    first = tasks(store, run_id)
    assert {n: t["state"] for n, t in first.items()} == {
        "produce": "succeeded", "flaky": "failed", "consume": "upstream_failed",
        "side": "succeeded"}
    assert engine.run_state(run_id) == "failed"

    marker.write_text("ok")
    assert engine.retry_run(run_id) == 2
    run_agent(engine, run_id)
    second = tasks(store, run_id)
    assert set(t["state"] for t in second.values()) == {"succeeded"}
    assert engine.run_state(run_id) == "succeeded"
    for kept in ("produce", "side"):
        assert second[kept]["attempts"] == 1
        assert second[kept]["result"] == first[kept]["result"]
        assert len(attempts(store, second[kept]["id"])) == 1
    assert second["flaky"]["attempts"] == 2
    assert second["flaky"]["result"] == {"attempt": 2}
    assert [a["state"] for a in attempts(store, second["flaky"]["id"])] == [
        "failed", "succeeded"]
    assert second["consume"]["result"]["x"] == 42


def test_retry_reruns_a_foreach_only_after_the_upstream_it_waits_for(
        engine: Engine, store: Store, tmp_path: Path) -> None:
    """A foreach that ran under all_done beside a failed upstream: a retry reruns the
    upstream, and the items that did not succeed wait for it, as the foreach did at first
    (they ran at once, beside it, and its dependants before it ended)."""
    marker = tmp_path / "fixed"
    run_id, _ = run_job(engine, """
        job: retry_fe
        tasks:
          gate: {python: "tpforeach:gate"}
          each:
            depends_on: [gate]
            trigger: all_done
            foreach: {values: [1, 2]}
            python: "tpforeach:needs_gate"
          after: {depends_on: [each], python: "tpforeach:noop"}
        """, params={"marker": str(marker), "sleep": 0.3})
    assert states(store, run_id) == {"gate": "failed", "each": "failed",
                                     "after": "upstream_failed"}
    marker.write_text("ok")
    engine.retry_run(run_id)
    run_agent(engine, run_id)
    assert states(store, run_id) == {"gate": "succeeded", "each": "succeeded",
                                     "after": "succeeded"}
    assert engine.run_state(run_id) == "succeeded"
    with store.read() as tx:
        got = tx.all("SELECT item_index, state, attempts, result FROM task_runs"
                     " WHERE run_id = :r AND parent_id IS NOT NULL ORDER BY item_index",
                     {"r": run_id})
    assert [(int(i), str(s), int(a)) for i, s, a, _ in got] == [
        (0, "succeeded", 2), (1, "succeeded", 2)]
    assert [json.loads(r)["gate"] for *_, r in got] == [{"attempt": 2}, {"attempt": 2}]


def test_retry_skips_a_foreach_whose_rule_its_rerun_upstream_no_longer_meets(
        engine: Engine, store: Store, tmp_path: Path) -> None:
    """A one_failed foreach that ran because its upstream failed: once a retry makes that
    upstream succeed, the foreach is skipped, its old items do not run again, and the run
    succeeds."""
    marker = tmp_path / "fixed"
    run_id, _ = run_job(engine, """
        job: retry_fe_handler
        tasks:
          gate: {python: "tpforeach:gate"}
          cleanup:
            depends_on: [gate]
            trigger: one_failed
            foreach: {values: [good, bad]}
            python: "tpforeach:fail_on_bad"
        """, params={"marker": str(marker), "sleep": 0.3})
    assert states(store, run_id) == {"gate": "failed", "cleanup": "failed"}
    marker.write_text("ok")
    engine.retry_run(run_id)
    run_agent(engine, run_id)
    assert states(store, run_id) == {"gate": "succeeded", "cleanup": "skipped"}
    assert engine.run_state(run_id) == "succeeded"
    with store.read() as tx:
        got = tx.all("SELECT item_index, attempts FROM task_runs"
                     " WHERE run_id = :r AND parent_id IS NOT NULL ORDER BY item_index",
                     {"r": run_id})
    assert [(int(i), int(a)) for i, a in got] == [(0, 1), (1, 1)]


@pytest.mark.parametrize("policy", ["continue", "stop", "finish_stage", "cancel"])
def test_retry_of_a_branch_keeps_a_task_skipped_for_a_failure_from_running(
        engine: Engine, store: Store, tmp_path: Path, policy: str) -> None:
    """Outside `continue`, a task that never ran because its upstream failed ends skipped, and
    still counts as failed for its dependants. `retry --task` of another branch of one of them
    must not run that dependant as if the skipped task had succeeded."""
    marker = tmp_path / "fixed"
    run_id, _ = run_job(engine, f"""
        job: retry_branch
        on_failure: {policy}
        tasks:
          a: {{python: "tpjobs:fail"}}
          c: {{python: "tpjobs:record", depends_on: [a]}}
          e: {{python: "tpjobs:flaky"}}
          d: {{python: "tpjobs:record", depends_on: [c, e]}}
          h: {{python: "tpjobs:record", depends_on: [d], trigger: all_done}}
        """, params={"marker": str(marker)}, slots=1)
    # upstream_failed only under continue; elsewhere skipped, which still counts as failed
    never = "upstream_failed" if policy == "continue" else "skipped"
    first = states(store, run_id)
    assert first["a"] == "failed" and first["c"] == never and first["d"] == never
    marker.write_text("ok")
    engine.retry_run(run_id, "e")
    run_agent(engine, run_id)
    after = states(store, run_id)
    assert after["e"] == "succeeded"
    assert after["c"] == never and after["d"] == never  # c still has a failed upstream
    assert after["h"] == "succeeded"  # all_done: runs once d ended, whatever it ended
    assert tasks(store, run_id)["d"]["attempts"] == 0
    assert engine.run_state(run_id) == "failed"
    engine.retry_run(run_id, "d")  # resolved at once, by the same rule
    assert engine.run_state(run_id) == "failed"
    assert states(store, run_id) == after and tasks(store, run_id)["d"]["attempts"] == 0


@pytest.mark.parametrize("rule", ["one_failed", "all_done"])
def test_retry_reruns_a_task_without_upstreams_whatever_its_trigger(
        engine: Engine, store: Store, tmp_path: Path, rule: str) -> None:
    """A task with no upstreams starts with its run, whatever its trigger rule (there is
    nothing for the rule to judge). A retry judged it as if its upstreams had all succeeded:
    a failed `one_failed` task was skipped instead of rerun, and its dependants then ran as
    if it had been."""
    marker = tmp_path / "fixed"
    run_id, _ = run_job(engine, f"""
        job: lone
        tasks:
          solo: {{python: "tpjobs:flaky", trigger: {rule}}}
          next: {{python: "tpjobs:record", depends_on: [solo]}}
        """, params={"marker": str(marker)})
    assert states(store, run_id) == {"solo": "failed", "next": "upstream_failed"}
    marker.write_text("ok")
    engine.retry_run(run_id)
    run_agent(engine, run_id)
    got = tasks(store, run_id)
    assert {n: t["state"] for n, t in got.items()} == {"solo": "succeeded",
                                                       "next": "succeeded"}
    assert got["solo"]["attempts"] == 2
    assert engine.run_state(run_id) == "succeeded"


def test_status_of_a_stopping_run_says_what_will_not_start(engine: Engine,
                                                            store: Store) -> None:
    """While a stopped run drains, a task waiting for a retry was said to retry at its time,
    and one waiting for its upstreams to wait for them, though neither will start."""
    import time

    from engine_helpers import apply_job

    from taskplan.engine import waiting

    now = time.time()
    run_id = engine.create_run(apply_job(engine, """
        job: draining
        tasks:
          x: {shell: "true", retries: 2, retry_delay: 1h}
          y: {shell: "true"}
          z: {shell: "true", depends_on: [y]}
        """))
    with store.tx() as tx:
        ids = {str(t): int(i) for i, t in tx.all(
            "SELECT id, task FROM task_runs WHERE run_id = :r", {"r": run_id})}
        tx.run("UPDATE task_runs SET state = 'retrying', ready_at = :t WHERE id = :i",
               {"t": now + 3600, "i": ids["x"]})
        tx.run("UPDATE task_runs SET state = 'running' WHERE id = :i", {"i": ids["y"]})
        tx.run("UPDATE runs SET running = 1, ready = 0 WHERE id = :r", {"r": run_id})
    assert waiting.explain(store, run_id, now)[ids["z"]] == "waiting for upstreams: y"
    assert engine.stop_run(run_id) == "stopping"
    why = waiting.explain(store, run_id, now)
    assert why[ids["x"]] == "run stopping: it does not retry"
    assert why[ids["z"]] == "run stopping: nothing new starts"


@pytest.mark.parametrize("policy", ["stop", "cancel"])
def test_retry_of_a_task_reruns_what_it_waits_for_that_a_halt_left_unstarted(
        engine: Engine, store: Store, tmp_path: Path, policy: str) -> None:
    """Under on_failure stop, `extract_a` fails and `extract_b` never starts (skipped).
    `retry --task extract_a` reran extract_a, then `load`, which waits for both, as if
    extract_b had been skipped on purpose: load ran on half of its input, and the run
    succeeded. A task that never started because its run halted, and that the retried
    tasks wait for, runs again with them."""
    marker = tmp_path / "fixed"
    run_id, _ = run_job(engine, f"""
        job: halted_inputs
        on_failure: {policy}
        tasks:
          extract_a: {{python: "tpjobs:flaky", priority: 10}}
          extract_b: {{python: "tpjobs:record"}}
          load: {{python: "tpjobs:record", depends_on: [extract_a, extract_b]}}
          report: {{python: "tpjobs:record", depends_on: [extract_b]}}
        """, params={"marker": str(marker)}, slots=1)
    assert states(store, run_id) == {"extract_a": "failed", "extract_b": "skipped",
                                     "load": "skipped", "report": "skipped"}
    marker.write_text("ok")
    engine.retry_run(run_id, "extract_a")
    run_agent(engine, run_id)
    got = tasks(store, run_id)
    # report does not depend on extract_a: outside the retry, it stays as it was
    assert {n: t["state"] for n, t in got.items()} == {
        "extract_a": "succeeded", "extract_b": "succeeded", "load": "succeeded",
        "report": "skipped"}
    assert got["extract_b"]["finished_at"] <= got["load"]["started_at"]
    assert engine.run_state(run_id) == "succeeded"


def test_finished_runs_refuse_retry_stop_and_cancel(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: settled
        tasks:
          a: {python: "tpjobs:record"}
          b: {python: "tpjobs:fail"}
          c: {python: "tpjobs:record", depends_on: [a]}
        """)
    assert engine.run_state(run_id) == "failed"
    before = tasks(store, run_id)
    with pytest.raises(ConflictError, match=rf"^run {run_id}: task a and what depends on it"
                                            " already succeeded, nothing to retry$"):
        engine.retry_run(run_id, "a")
    for verb, command in (("stop", engine.stop_run), ("cancel", engine.cancel_run)):
        with pytest.raises(ConflictError,
                           match=rf"^run {run_id} already failed, nothing to {verb}$"):
            command(run_id)
    assert tasks(store, run_id) == before and engine.run_state(run_id) == "failed"

    run_id, _ = run_job(engine, """
        job: all_good
        tasks:
          a: {python: "tpjobs:record"}
        """)
    before = tasks(store, run_id)
    with pytest.raises(ConflictError, match=rf"^run {run_id} already succeeded, nothing to retry$"):
        engine.retry_run(run_id)
    assert tasks(store, run_id) == before and engine.run_state(run_id) == "succeeded"
