"""Dependencies, stage barriers, trigger rules, results between tasks, and the event trail."""

from __future__ import annotations

from engine_helpers import events, intervals, run_job, states, tasks

from taskplan.engine import Engine
from taskplan.store.db import Store


def test_depends_on_chain_runs_in_order(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: chain
        tasks:
          a: {python: "tpjobs:record"}
          b: {python: "tpjobs:record", depends_on: [a]}
          c: {python: "tpjobs:record", depends_on: [b]}
          d: {python: "tpjobs:record", depends_on: [a, c]}
        """, slots=4)
    assert states(store, run_id) == dict.fromkeys("abcd", "succeeded")
    span = intervals(store, run_id)
    assert span["a"][1] <= span["b"][0]
    assert span["b"][1] <= span["c"][0]
    assert span["c"][1] <= span["d"][0]
    assert engine.run_state(run_id) == "succeeded"


def test_stage_barrier_is_never_crossed(engine: Engine, store: Store) -> None:
    run_id, agent = run_job(engine, """
        job: staged
        params: {sleep: 0.05}
        tasks:
          s1a: {python: "tpjobs:record", stage: 1}
          s1b: {python: "tpjobs:record", stage: 1}
          s1c: {python: "tpjobs:record", stage: 1}
          s2a: {python: "tpjobs:record", stage: 2}
          s2b: {python: "tpjobs:record", stage: 2}
          s3a: {python: "tpjobs:record", stage: 3}
        """, slots=6)
    assert set(states(store, run_id).values()) == {"succeeded"}
    span = intervals(store, run_id)
    by_stage: dict[int, list[tuple[float, float]]] = {}
    for name, iv in span.items():
        by_stage.setdefault(int(name[1]), []).append(iv)
    for low, high in ((1, 2), (2, 3)):
        assert min(s for s, _ in by_stage[high]) >= max(e for _, e in by_stage[low])
    # Stage 1 really ran in parallel, so the barrier was what held stage 2 back.
    assert agent.max_concurrency >= 2


def test_stages_and_depends_on_combined(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: combined
        params: {sleep: 0.03}
        tasks:
          load_a: {python: "tpjobs:record", stage: 1}
          load_b: {python: "tpjobs:record", stage: 1, depends_on: [load_a]}
          build: {python: "tpjobs:record", stage: 2}
          publish: {python: "tpjobs:record", stage: 2, depends_on: [build]}
          side: {python: "tpjobs:record", depends_on: [load_a]}
        """, slots=4)
    assert set(states(store, run_id).values()) == {"succeeded"}
    span = intervals(store, run_id)
    assert span["load_a"][1] <= span["load_b"][0]
    stage1_end = max(span["load_a"][1], span["load_b"][1])
    assert span["build"][0] >= stage1_end
    assert span["publish"][0] >= span["build"][1]
    # An unstaged task waits for its own upstreams only.
    assert span["side"][0] >= span["load_a"][1]


def test_trigger_rules_and_skipped_propagation(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: triggers
        on_failure: continue
        tasks:
          bad: {python: "tpjobs:fail"}
          good: {python: "tpjobs:record"}
          needs_bad: {python: "tpjobs:record", depends_on: [bad]}
          done_bad: {python: "tpjobs:record", depends_on: [bad], trigger: all_done}
          onfail_bad: {python: "tpjobs:record", depends_on: [bad], trigger: one_failed}
          onfail_good: {python: "tpjobs:record", depends_on: [good], trigger: one_failed}
          after_skip: {python: "tpjobs:record", depends_on: [onfail_good]}
          after_skip_onfail:
            python: "tpjobs:record"
            depends_on: [onfail_good]
            trigger: one_failed
          after_skip_done:
            python: "tpjobs:record"
            depends_on: [onfail_good]
            trigger: all_done
          after_upfail: {python: "tpjobs:record", depends_on: [needs_bad]}
          after_upfail_onfail:
            python: "tpjobs:record"
            depends_on: [needs_bad]
            trigger: one_failed
          mixed_onfail:
            python: "tpjobs:record"
            depends_on: [good, bad]
            trigger: one_failed
          mixed_done: {python: "tpjobs:record", depends_on: [good, bad], trigger: all_done}
        """)
    got = states(store, run_id)
    assert got == {
        "bad": "failed",
        "good": "succeeded",
        "needs_bad": "upstream_failed",
        "done_bad": "succeeded",
        "onfail_bad": "succeeded",
        "onfail_good": "skipped",
        # A skipped upstream counts as a success for all_success ...
        "after_skip": "succeeded",
        # ... is not a failure for one_failed ...
        "after_skip_onfail": "skipped",
        # ... and is an end state for all_done.
        "after_skip_done": "succeeded",
        "after_upfail": "upstream_failed",
        "after_upfail_onfail": "succeeded",
        "mixed_onfail": "succeeded",
        "mixed_done": "succeeded",
    }
    never_ran = {n for n, t in tasks(store, run_id).items() if t["attempts"] == 0}
    assert never_ran == {"needs_bad", "onfail_good", "after_skip_onfail", "after_upfail"}
    assert engine.run_state(run_id) == "failed"


def test_python_result_reaches_downstream_task(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: results
        tasks:
          produce: {python: "tpjobs:produce"}
          consume: {python: "tpjobs:consume", depends_on: [produce]}
        """)
    got = tasks(store, run_id)
    assert got["produce"]["result"] == {"x": 41, "rows": [1, 2, 3]}
    assert got["consume"]["result"] == {"x": 42, "n": 3, "seen": ["produce"]}


def test_an_event_row_for_every_transition(engine: Engine, store: Store) -> None:
    run_id, _ = run_job(engine, """
        job: trail
        tasks:
          first: {python: "tpjobs:record"}
          flaky:
            python: "tpjobs:flaky"
            depends_on: [first]
            retries: 1
            retry_delay: 0.05s
          after: {python: "tpjobs:record", depends_on: [flaky]}
          handler: {python: "tpjobs:record", depends_on: [flaky], trigger: one_failed}
        """, params={"marker": "/nonexistent/taskplan-marker"})
    info = tasks(store, run_id)
    trail = events(store, run_id)
    per_task: dict[int, list[str]] = {}
    for tr_id, state, _ in trail:
        if tr_id is not None:
            per_task.setdefault(tr_id, []).append(state)
    assert per_task[info["first"]["id"]] == ["ready", "running", "succeeded"]
    assert per_task[info["flaky"]["id"]] == [
        "ready", "running", "retrying", "ready", "running", "failed"]
    assert per_task[info["after"]["id"]] == ["upstream_failed"]
    assert per_task[info["handler"]["id"]] == ["ready", "running", "succeeded"]
    for t in info.values():
        # The last event of every task run is its final state; one "running" per attempt.
        assert per_task[t["id"]][-1] == t["state"]
        assert per_task[t["id"]].count("running") == t["attempts"]
    run_events = [s for tr, s, _ in trail if tr is None]
    assert run_events == ["running", "failed"]
    flaky_detail = [d for tr, s, d in trail if tr == info["flaky"]["id"] and s == "failed"]
    assert flaky_detail and "marker missing" in str(flaky_detail[0])
