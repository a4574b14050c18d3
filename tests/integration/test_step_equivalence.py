"""One definition of the dispatch rules: random job graphs driven through the engine's batched
step (on PostgreSQL, the server-side step function) and through the reference that records every
finish on its own in Python must write exactly the same rows, and both must respect every limit.

Graphs mix dependencies, stages, the three trigger rules, the four on_failure policies, retries,
priorities, a pool, max_parallel, a foreach and tasks that need an agent label, in two runs
at once (of two jobs whose priorities differ, or not; the second run pinned to one agent, or
not), claimed by two agents stepping in turn, only one of which has the label.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import pytest
from engine_helpers import apply_job, written_rows
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_step_batching import Clock, OneByOne

from taskplan.engine import Claim, Engine, Outcome
from taskplan.model import TaskState
from taskplan.store.db import Store

SLOTS = 3
MAX_STEPS = 80
_names = itertools.count()


@dataclass(frozen=True)
class Shape:
    tasks: list[dict[str, Any]]
    policy: str
    max_parallel: int | None
    pool_size: int
    fails_once: frozenset[str]
    fails_always: frozenset[str]
    second_priority: int  # the second run's job priority (the first job's is 0)
    pin_second: bool  # the second run is pinned to the agent that has the label


@st.composite
def shapes(draw: Any) -> Shape:
    n = draw(st.integers(3, 8))
    # Distinct priorities: among ready task runs of equal rank the claim order is not defined
    # (ties come out in any order), so only the items of one foreach may tie.
    priorities = draw(st.permutations(range(n)))
    tasks = []
    for i in range(n):
        deps = sorted(draw(st.sets(st.integers(0, i - 1), max_size=2))) if i else []
        tasks.append({
            "deps": [f"t{d}" for d in deps],
            "stage": draw(st.none() | st.integers(1, 2)),
            "trigger": draw(st.sampled_from(["all_success", "all_success", "all_done",
                                             "one_failed"])),
            "retries": draw(st.integers(0, 1)),
            "priority": priorities[i] - n // 2,
            "pool": draw(st.booleans()),
            "foreach": draw(st.none() | st.integers(1, 3)) if i == n - 1 or not deps else None,
            "label": draw(st.booleans()),
        })
    # Stages never go down along the index order that dependencies follow: a dependency on
    # a later stage would be a cycle through that stage's barrier.
    staged = sorted(t["stage"] for t in tasks if t["stage"] is not None)
    for t in tasks:
        if t["stage"] is not None:
            t["stage"] = staged.pop(0)
    names = [f"t{i}" for i in range(n)]
    return Shape(
        tasks=tasks,
        policy=draw(st.sampled_from(["continue", "stop", "cancel", "finish_stage"])),
        max_parallel=draw(st.none() | st.integers(1, 2)),
        pool_size=draw(st.integers(1, 2)),
        fails_once=frozenset(draw(st.sets(st.sampled_from(names), max_size=2))),
        fails_always=frozenset(draw(st.sets(st.sampled_from(names), max_size=1))),
        second_priority=draw(st.sampled_from([-1, 0, 1])),
        pin_second=draw(st.booleans()),
    )


def job_text(shape: Shape, name: str, pool: str, priority: int = 0) -> str:
    lines = [f"job: {name}", f"on_failure: {shape.policy}", f"pools: {{{pool}: "
             f"{shape.pool_size}}}", f"priority: {priority}"]
    if shape.max_parallel is not None:
        lines.append(f"max_parallel: {shape.max_parallel}")
    lines.append("tasks:")
    for i, t in enumerate(shape.tasks):
        lines.append(f"  t{i}:")
        lines.append('    python: "tpjobs:record"')
        if t["deps"]:
            lines.append(f"    depends_on: [{', '.join(t['deps'])}]")
        if t["stage"] is not None:
            lines.append(f"    stage: {t['stage']}")
        lines.append(f"    trigger: {t['trigger']}")
        lines.append(f"    retries: {t['retries']}")
        lines.append(f"    priority: {t['priority']}")
        if t["pool"]:
            lines.append(f"    pool: {pool}")
        if t["label"]:
            lines.append("    agent_labels: [gpu]")
        if t["foreach"] is not None:
            lines.append(f"    foreach: {{values: {list(range(t['foreach']))}}}")
    return "\n".join(lines) + "\n"


def outcome(shape: Shape, claim: Claim, now: float) -> Outcome:
    ended = now - 0.25
    if claim.task in shape.fails_always or (claim.task in shape.fails_once
                                           and claim.attempt == 1):
        return Outcome(TaskState.FAILED, exit_code=1, error=f"{claim.task} failed",
                       ended_at=ended)
    return Outcome(TaskState.SUCCEEDED, exit_code=0, result={"t": claim.task}, ended_at=ended)


def limits_held(store: Store, runs: list[int], shape: Shape, pool: str) -> None:
    with store.read() as tx:
        for run_id in runs:
            running = tx.scalar("SELECT COUNT(*) FROM task_runs WHERE run_id = :r AND state ="
                                " 'running' AND kind <> 'foreach'", {"r": run_id})
            if shape.max_parallel is not None:
                assert running <= shape.max_parallel, (run_id, running)
        in_pool = tx.scalar("SELECT COUNT(*) FROM task_runs WHERE pool = :p AND state ="
                            " 'running'", {"p": pool})
        assert in_pool <= shape.pool_size, in_pool


def leave_nothing_active(engine: Engine, store: Store) -> None:
    """A failed example (hypothesis shrinks by re-running) may leave runs going: end them so
    they do not take this example's slots."""
    with store.read() as tx:
        active = [int(r[0]) for r in tx.all(
            "SELECT id FROM runs WHERE state IN ('queued', 'running', 'stopping')")]
    for run_id in active:
        engine.cancel_run(run_id)


def drive(engine: Engine, clock: Clock, store: Store, shape: Shape, name: str
          ) -> tuple[list[int], list[Any]]:
    leave_nothing_active(engine, store)
    pool = f"p_{name}"
    first = apply_job(engine, job_text(shape, f"{name}a", pool))
    second = apply_job(engine, job_text(shape, f"{name}b", pool, shape.second_priority))
    gpu = engine.register_agent(f"gpu-{name}", "host", 1, SLOTS, 3600.0, labels=["gpu"])
    plain = engine.register_agent(f"plain-{name}", "host", 1, SLOTS, 3600.0)
    runs = [engine.create_run(first),
            engine.create_run(second, pin_agent_id=gpu if shape.pin_second else None)]
    order = {r: n for n, r in enumerate(runs)}
    pending: dict[int, list[tuple[Claim, Outcome]]] = {gpu: [], plain: []}
    trace = []
    ended: set[int] = set()
    for _ in range(MAX_STEPS):
        clock.now += 1.0
        engine.promote_retries()
        for n, agent_id in enumerate((gpu, plain)):
            held = pending[agent_id]
            free = SLOTS - sum(1 for c, o in held if not o.expanded)
            step = engine.step(agent_id, held, max(free, 0))
            limits_held(store, runs, shape, pool)
            ended.update(r for r, _ in step.finished_runs)
            # Which items of one foreach a step takes is not defined (they tie): count them.
            trace.append((n, sorted((order.get(r, -1), s) for r, s in step.finished_runs),
                          sorted((order[c.run_id], c.task, c.item is not None, c.attempt)
                                 for c in step.claims)))
            held = []
            for claim in step.claims:
                assert agent_id == gpu or not shape.tasks[int(claim.task[1:])]["label"]
                assert agent_id == gpu or not (shape.pin_second and claim.run_id == runs[1])
                if claim.kind == "foreach":
                    items = [[i] for i in range(shape.tasks[int(claim.task[1:])]["foreach"]
                                                or 0)]
                    got = engine.expand_foreach(claim, iter(items))
                    held.append((claim, Outcome(TaskState.SUCCEEDED, expanded=True)
                                 if got else Outcome(TaskState.SUCCEEDED, result=[])))
                else:
                    held.append((claim, outcome(shape, claim, clock.now)))
            pending[agent_id] = held
        if set(runs) <= ended and not any(pending.values()):
            break
    assert set(runs) <= ended, f"runs did not end in {MAX_STEPS} steps: {trace[-3:]}"
    return runs, trace


def snapshot(store: Store, runs: list[int]) -> list[Any]:
    out = []
    with store.read() as tx:
        for run_id in runs:
            # Items of one foreach are told apart by what happened to them, not by index.
            names = {int(i): f"{t}[{'item' if x is not None else ''}]" for i, t, x in tx.all(
                "SELECT id, task, item_index FROM task_runs WHERE run_id = :r", {"r": run_id})}
            out.append(written_rows(tx, run_id, names, "kind, state, attempts, max_attempts,"
                                    " pending_up, failed_up, ready_at, started_at, finished_at,"
                                    " exit_code, result, error"))
    return out


# derandomize: the same 25 graphs every run, so that CI's verdict does not depend on the draw.
# Random draws found the case kept below as its own test.
@pytest.mark.slow
@settings(max_examples=25, report_multiple_bugs=False, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(shape=shapes())
def test_batched_and_server_steps_write_what_the_reference_writes(store: Store,
                                                                  shape: Shape) -> None:
    assert_same_as_reference(store, shape)


def _plain(priority: int, foreach: int | None = None) -> dict[str, Any]:
    return {"deps": [], "stage": None, "trigger": "all_success", "retries": 0,
            "priority": priority, "pool": False, "foreach": foreach, "label": False}


def test_a_foreach_item_ending_after_a_cancel_policy_fired(store: Store) -> None:
    """Two foreach tasks claimed in one step, the higher-priority one first: their items are
    expanded in claim order, so their ids (and the order in which one step records their
    ends) follow it. The server step once returned claims best first and the general path in
    id order, so on PostgreSQL a sibling's success was recorded before the failure that
    cancels it."""
    tasks = [_plain(-3), _plain(-2), _plain(-1), _plain(0, foreach=1), _plain(1),
             _plain(2, foreach=1)]
    assert_same_as_reference(store, Shape(
        tasks=tasks, policy="cancel", max_parallel=None, pool_size=1, fails_once=frozenset(),
        fails_always=frozenset({"t3"}), second_priority=-1, pin_second=False))


def assert_same_as_reference(store: Store, shape: Shape) -> None:
    got = []
    for cls in (OneByOne, Engine):
        clock = Clock()
        engine = cls(store, clock=clock)
        name = f"eq{next(_names)}"
        runs, trace = drive(engine, clock, store, shape, name)
        got.append((trace, snapshot(store, runs)))
    assert got[1] == got[0]
