"""`job` tasks: start a run of another job, succeed or fail with it, cancel it with the parent."""

from __future__ import annotations

import json
import threading

import pytest
from engine_helpers import apply_job, run_agent, start_run, tasks, wait_for

from taskplan.engine import Engine
from taskplan.errors import UsageError
from taskplan.store.db import Store

CHILD = """
    job: child
    params: {day: none, fail: "no"}
    tasks:
      work: {python: "tpjobs:record"}
      check: {shell: 'test "$TASKPLAN_PARAM_FAIL" = no', depends_on: [work]}
    """


def child_of(store: Store, task_run_id: int) -> tuple[int, int, int, str, str]:
    with store.read() as tx:
        row = tx.one("SELECT t.child_run_id, r.parent_task_run_id, r.root_run_id, r.state,"
                     " r.params FROM task_runs t JOIN runs r ON r.id = t.child_run_id"
                     " WHERE t.id = :i", {"i": task_run_id})
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), str(row[3]), str(row[4])


def test_job_task_runs_the_child_and_succeeds_with_it(engine: Engine, store: Store) -> None:
    apply_job(engine, CHILD)
    run_id = start_run(engine, """
        job: parent
        params: {day: "2026-11-20"}
        tasks:
          sub: {job: child, params: {day: "{{ params.day }}"}}
          after: {python: "tpjobs:record", depends_on: [sub]}
        """)
    run_agent(engine, run_id, slots=1)  # one slot: the waiting job task holds none
    top = tasks(store, run_id)
    assert top["sub"]["state"] == "succeeded" and top["after"]["state"] == "succeeded"
    child, parent_tr, root, state, params = child_of(store, top["sub"]["id"])
    assert (parent_tr, root, state) == (top["sub"]["id"], run_id, "succeeded")
    assert '"day":"2026-11-20"' in params
    assert top["sub"]["result"] == {"run_id": child, "state": "succeeded"}
    assert engine.run_state(run_id) == "succeeded"


def test_job_task_fails_with_its_child(engine: Engine, store: Store) -> None:
    apply_job(engine, CHILD)
    run_id = start_run(engine, """
        job: parent_fail
        tasks:
          sub: {job: child, params: {fail: "yes"}}
          after: {python: "tpjobs:record", depends_on: [sub]}
        """)
    run_agent(engine, run_id, slots=2)
    top = tasks(store, run_id)
    assert top["sub"]["state"] == "failed"
    assert top["after"]["state"] == "upstream_failed"
    child = child_of(store, top["sub"]["id"])
    assert child[3] == "failed"
    assert top["sub"]["error"] == f"run {child[0]} ended failed"
    assert engine.run_state(run_id) == "failed"


def test_cancelling_the_parent_cancels_the_child(engine: Engine, store: Store) -> None:
    apply_job(engine, """
        job: slow_child
        tasks:
          nap: {shell: "sleep 30"}
        """)
    run_id = start_run(engine, """
        job: parent_cancel
        tasks:
          sub: {job: slow_child}
        """)
    done = threading.Event()

    def watch() -> None:
        def child_running() -> bool:
            with store.read() as tx:
                return tx.scalar("SELECT COUNT(*) FROM task_runs t JOIN runs r ON r.id ="
                                 " t.run_id WHERE r.root_run_id = :r AND r.id <> :r AND"
                                 " t.state = 'running'", {"r": run_id}) == 1
        wait_for(child_running, 10, "the child's task to run")
        engine.cancel_run(run_id)
        done.set()

    threading.Thread(target=watch, daemon=True).start()
    run_agent(engine, run_id, slots=2, timeout=20,
              until=lambda a: done.is_set() and a.busy == 0)
    top = tasks(store, run_id)
    assert top["sub"]["state"] == "cancelled"
    child = child_of(store, top["sub"]["id"])
    assert child[3] == "cancelled"
    with store.read() as tx:
        assert tx.scalar("SELECT state FROM task_runs WHERE run_id = :c", {"c": child[0]}) \
            == "cancelled"


def test_job_cycles_are_refused_at_apply(engine: Engine) -> None:
    apply_job(engine, """
        job: cyc_a
        tasks:
          b: {job: cyc_b}
        """)
    apply_job(engine, """
        job: cyc_c
        tasks:
          a: {job: cyc_a}
        """)
    with pytest.raises(UsageError, match=r"job cycle: cyc_b -> cyc_c -> cyc_a -> cyc_b"):
        apply_job(engine, """
            job: cyc_b
            tasks:
              c: {job: cyc_c}
            """)


def test_a_childs_params_are_checked_and_typed_as_a_runs_are(engine: Engine, store: Store
                                                             ) -> None:
    apply_job(engine, """
        job: counted
        params: {n: 3}
        tasks:
          work: {shell: [test, "{{ params.n + 1 }}", "-eq", "8"]}
        """)
    run_id = start_run(engine, """
        job: passes
        params: {m: 7}
        tasks:
          typed: {job: counted, params: {n: "{{ params.m }}"}}
          unknown: {job: counted, params: {nn: "1"}}
        """)
    run_agent(engine, run_id, slots=2)
    top = tasks(store, run_id)
    # rendered text "7" reaches the child as the number its default is
    assert top["typed"]["state"] == "succeeded"
    assert '"n":7' in child_of(store, top["typed"]["id"])[4]
    assert top["unknown"]["state"] == "failed"
    assert "unknown param 'nn' (the job declares: n)" in top["unknown"]["error"]


def test_templates_inside_a_list_or_mapping_param_are_rendered(engine: Engine, store: Store
                                                               ) -> None:
    """`names: [x, "{{ params.m }}"]` reached the child as the text `{{ params.m }}`: only a
    param that is text itself was rendered. Every text inside a list or mapping is."""
    apply_job(engine, """
        job: listed
        params: {names: [a], opts: {}}
        tasks:
          work: {shell: "true"}
        """)
    run_id = start_run(engine, """
        job: lister
        params: {m: 7, who: bob}
        tasks:
          sub:
            foreach: {values: [{k: one}]}
            job: listed
            params:
              names: [x, "{{ params.m }}", ["{{ item.k }}"]]
              opts: {user: "{{ params.who }}", n: 1}
        """)
    run_agent(engine, run_id, slots=2)
    with store.read() as tx:
        [params] = [str(r[0]) for r in tx.all(
            "SELECT params FROM runs WHERE id <> :r", {"r": run_id})]
    got = json.loads(params)
    assert got["names"] == ["x", "7", ["one"]]
    assert got["opts"] == {"user": "bob", "n": 1}


def test_cancelling_the_child_run_cancels_its_job_task_without_a_retry(engine: Engine,
                                                                      store: Store) -> None:
    """`taskplan cancel CHILD`: the job task took the cancelled run for a failure and, with
    retries left, started another run of the child job at once."""
    apply_job(engine, """
        job: unserved_child
        tasks:
          nap: {shell: "true", agent_labels: [nobody_has_this]}
        """)
    run_id = start_run(engine, """
        job: parent_of_cancelled
        tasks:
          sub: {job: unserved_child, retries: 2}
          after: {python: "tpjobs:record", depends_on: [sub]}
          handler: {python: "tpjobs:record", depends_on: [sub], trigger: one_failed}
        """)

    def children() -> list[int]:
        with store.read() as tx:
            return [int(r) for (r,) in tx.all(
                "SELECT id FROM runs WHERE root_run_id = :r AND id <> :r ORDER BY id",
                {"r": run_id})]

    run_agent(engine, run_id, slots=2, until=lambda a: bool(children()))
    [child] = children()
    assert engine.cancel_run(child) == "cancelled"
    top = tasks(store, run_id)
    assert top["sub"]["state"] == "cancelled" and top["sub"]["attempts"] == 1
    assert top["sub"]["error"] == f"run {child} was cancelled"
    assert children() == [child]  # no second run of the child job
    run_agent(engine, run_id, slots=2)
    top = tasks(store, run_id)
    # A cancelled upstream counts as failed, as a killed task's does.
    assert (top["after"]["state"], top["handler"]["state"]) == ("upstream_failed", "succeeded")
    assert engine.run_state(run_id) == "failed"


def test_stopping_the_parent_drains_its_child_run_too(engine: Engine, store: Store) -> None:
    """`taskplan stop PARENT` drains the run: nothing new starts. Its child run went on
    starting its tasks to its end, as if the stop had not reached it."""
    from taskplan.agent import Agent

    apply_job(engine, """
        job: two_step_child
        params: {sleep_first: 1.0}
        tasks:
          first: {python: "tpjobs:record"}
          second: {python: "tpjobs:record", depends_on: [first]}
        """)
    run_id = start_run(engine, """
        job: parent_stopped
        tasks:
          sub: {job: two_step_child}
          after: {python: "tpjobs:record", depends_on: [sub]}
        """)
    answers: list[str] = []

    def stopper() -> None:
        def first_running() -> bool:
            with store.read() as tx:
                return tx.scalar("SELECT COUNT(*) FROM task_runs t JOIN runs r ON r.id ="
                                 " t.run_id WHERE r.root_run_id = :r AND r.id <> :r AND"
                                 " t.task = 'first' AND t.state = 'running'",
                                 {"r": run_id}) == 1
        wait_for(first_running, 10, "the child's first task to run")
        answers.append(engine.stop_run(run_id))

    thread = threading.Thread(target=stopper, daemon=True)
    thread.start()
    Agent(engine, slots=2, root_run_id=run_id).run(
        until=lambda a: engine.run_state(run_id) in ("cancelled", "failed", "succeeded"))
    thread.join(5)
    assert answers == ["stopping"]
    top = tasks(store, run_id)
    child = child_of(store, top["sub"]["id"])
    assert {n: t["state"] for n, t in tasks(store, child[0]).items()} == {
        "first": "succeeded", "second": "skipped"}
    assert child[3] == "cancelled"
    assert {n: t["state"] for n, t in top.items()} == {"sub": "cancelled", "after": "skipped"}
    assert engine.run_state(run_id) == "cancelled"
