"""A stateful property test of the engine against a small reference model of its documented
semantics (docs/job-file.md: stages, trigger rules, on_failure, retries; foreach; job tasks).

Hypothesis generates a job graph, then interleaves agent steps (claims), attempt outcomes
(success or failure, decided here, not by running anything) and crashes: the agent is killed
between two store transactions (its claims and unrecorded outcomes are simply dropped) and a
new engine instance recovers (reaps the dead agent once its lease ran out) and carries on.
At every step the model checks that each claimed task run was allowed to start; at the end,
once the run is driven to completion, it derives every task run's final state and attempt
count from what started and how each attempt ended, and compares them with the store.
"""

from __future__ import annotations

import itertools
import textwrap
from dataclasses import dataclass, field
from typing import Any

import pytest
from engine_helpers import JOBCODE
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from taskplan.engine import Claim, Engine, Outcome
from taskplan.model import TaskState
from taskplan.spec import load_job_text
from taskplan.store.db import Store

FAILED_LIKE = {"failed", "upstream_failed", "cancelled"}
TERMINAL = {"succeeded", "failed", "upstream_failed", "skipped", "cancelled"}
LEASE = 5.0
_names = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Task:
    name: str
    deps: list[str]
    rule: str
    retries: int
    stage: int | None
    kind: str  # plain | foreach | job
    items: int = 0


@dataclass
class Graph:
    job: str
    child: str
    on_failure: str
    child_retries: int
    tasks: list[Task] = field(default_factory=list)

    def text(self) -> str:
        lines = [f"job: {self.job}", f"on_failure: {self.on_failure}", "tasks:"]
        for t in self.tasks:
            lines.append(f"  {t.name}:")
            if t.kind == "job":
                lines.append(f"    job: {self.child}")
            else:
                lines.append('    python: "tpforeach:noop"')
            if t.kind == "foreach":
                lines.append(f"    foreach: {{values: {list(range(t.items))}}}")
            lines += [f"    trigger: {t.rule}", f"    retries: {t.retries}",
                      "    retry_delay: 1s"]
            if t.deps:
                lines.append(f"    depends_on: [{', '.join(t.deps)}]")
            if t.stage is not None:
                lines.append(f"    stage: {t.stage}")
        return "\n".join(lines) + "\n"

    def child_text(self) -> str:
        return textwrap.dedent(f"""
            job: {self.child}
            tasks:
              only: {{python: "tpforeach:noop", retries: {self.child_retries},
                      retry_delay: 1s}}
            """)


@st.composite
def graphs(draw: Any) -> Graph:
    n = next(_names)
    g = Graph(f"m{n}", f"m{n}child", draw(st.sampled_from(
        ["continue", "stop", "finish_stage", "cancel"])), draw(st.integers(0, 1)))
    staged = draw(st.booleans())
    stage = 1
    has_job = False
    for i in range(draw(st.integers(2, 5))):
        deps = [t.name for t in g.tasks if draw(st.booleans())] if g.tasks else []
        if staged:
            stage = max(stage, draw(st.integers(stage, 2)))
        kind = draw(st.sampled_from(["plain", "plain", "foreach", "job"]))
        if kind == "job" and has_job:
            kind = "plain"
        has_job = has_job or kind == "job"
        g.tasks.append(Task(f"t{i}", deps, draw(st.sampled_from(
            ["all_success", "all_success", "all_done", "one_failed"])),
            draw(st.integers(0, 2)), stage if staged else None, kind,
            draw(st.integers(1, 2)) if kind == "foreach" else 0))
    return g


class EngineModel(RuleBasedStateMachine):
    store: Store

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.engine = Engine(self.store, clock=self.clock)
        self.in_flight: dict[int, Claim] = {}  # claimed, attempt not ended yet
        self.ended: list[tuple[Claim, Outcome]] = []  # ended, not recorded yet
        self.halted_at: dict[int, int | None] = {}  # run -> stage of the failure that halted it

    # -- set-up ---------------------------------------------------------------------------
    @initialize(graph=graphs())
    def start(self, graph: Graph) -> None:
        self.graph = graph
        self.by_name = {t.name: t for t in graph.tasks}
        self.engine.apply(load_job_text(graph.child_text(), "child.yaml", str(JOBCODE)))
        version_id, _, _ = self.engine.apply(
            load_job_text(graph.text(), "job.yaml", str(JOBCODE)))
        self.run_id = self.engine.create_run(version_id)
        self.agent = self.engine.register_agent("model", "host", 2**22 + 5, 3, LEASE)

    # -- what an agent does -----------------------------------------------------------------
    @rule(free=st.integers(1, 3))
    def step(self, free: int) -> None:
        """One dispatcher turn: record what ended, claim, start what was claimed."""
        self.clock.now += 2.0  # due retries (retry_delay 1s) become ready
        self.engine.promote_retries()
        result = self.engine.step(self.agent, self.ended, free, self.run_id)
        self.ended = []
        self.check_claims(result.claims)
        for claim in result.claims:
            task = self.by_name.get(claim.task)
            if claim.kind == "foreach":
                assert task is not None
                n = self.engine.expand_foreach(claim, [list(range(task.items))])
                if n:
                    self.ended.append((claim, Outcome(TaskState.SUCCEEDED, expanded=True)))
            elif task is not None and task.kind == "job" and claim.parent_id is None \
                    and claim.run_id == self.run_id:
                if self.engine.start_child_run(claim, self.graph.child, {}) is not None:
                    self.ended.append((claim, Outcome(TaskState.SUCCEEDED, expanded=True)))
            else:
                self.in_flight[claim.task_run_id] = claim

    @rule(data=st.data())
    def attempt_ends(self, data: Any) -> None:
        if not self.in_flight:
            return
        tr = data.draw(st.sampled_from(sorted(self.in_flight)))
        claim = self.in_flight.pop(tr)
        ok = data.draw(st.booleans())
        self.ended.append((claim, Outcome(TaskState.SUCCEEDED if ok else TaskState.FAILED,
                                          error=None if ok else "failed on purpose")))

    @rule()
    def crash(self) -> None:
        """The agent dies between two transactions: what it held in memory is gone. A new
        engine instance (another process) recovers once the dead agent's lease ran out."""
        self.in_flight.clear()
        self.ended.clear()
        self.clock.now += LEASE + 1.0
        self.engine = Engine(self.store, clock=self.clock)
        self.engine.reap()
        self.agent = self.engine.register_agent("model", "host", 2**22 + 5, 3, LEASE)

    # -- the model --------------------------------------------------------------------------
    def rows(self) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            rows = tx.all(
                "SELECT t.id, t.run_id, t.task, t.kind, t.parent_id, t.state, t.attempts,"
                " t.child_run_id, r.halt, r.parent_task_run_id FROM task_runs t"
                " JOIN runs r ON r.id = t.run_id WHERE r.root_run_id = :r OR r.id = :r",
                {"r": self.run_id})
        keys = ("id", "run", "task", "kind", "parent", "state", "attempts", "child", "halt",
                "parent_tr")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def upstreams(self, rows: list[dict[str, Any]], row: dict[str, Any]
                  ) -> list[dict[str, Any]]:
        """Rows a top-level task of the main run waits for: depends_on, and with stages every
        task of the stage below (through its barrier)."""
        task = self.by_name[row["task"]]
        mine = {r["task"]: r for r in rows if r["run"] == self.run_id and r["parent"] is None
                and r["kind"] != "barrier"}
        ups = [mine[d] for d in task.deps]
        if task.stage is not None:
            below = [t.stage for t in self.graph.tasks if t.stage is not None
                     and t.stage < task.stage]
            if below:
                ups += [mine[t.name] for t in self.graph.tasks if t.stage == max(below)]
        return ups

    def check_claims(self, claims: list[Claim]) -> None:
        rows = self.rows()
        by_id = {r["id"]: r for r in rows}
        for claim in claims:
            row = by_id[claim.task_run_id]
            assert claim.task_run_id not in self.in_flight, "claimed twice at once"
            assert row["attempts"] == claim.attempt
            if row["run"] != self.run_id or row["parent"] is not None:
                continue  # an item or the child's task: no upstreams of its own
            ups = self.upstreams(rows, row)
            states = [u["state"] for u in ups]
            assert all(s in TERMINAL for s in states), (claim.task, states)
            rule_ = self.by_name[claim.task].rule
            failed = [s for s in states if s in FAILED_LIKE]
            # A task without upstreams is ready at once, whatever its rule.
            if rule_ == "all_success":
                assert not failed, (claim.task, states)
            elif rule_ == "one_failed" and ups:
                assert failed, (claim.task, states)
            halt = row["halt"]
            if halt in ("stop", "cancel"):
                raise AssertionError(f"{claim.task} started after the run halted ({halt})")

    @invariant()
    def attempts_are_counted_once(self) -> None:
        if not hasattr(self, "run_id"):
            return
        with self.store.read() as tx:
            bad = tx.all(
                "SELECT t.id FROM task_runs t WHERE t.attempts <> (SELECT COUNT(*) FROM"
                " attempts a WHERE a.task_run_id = t.id) AND t.kind <> 'barrier'")
        assert bad == [], bad

    def teardown(self) -> None:
        if not hasattr(self, "run_id"):
            return
        # Drive to the end: every attempt still out ends as drawn already or succeeds.
        for _ in range(200):
            if self.engine.run_state(self.run_id) in TERMINAL - {"upstream_failed",
                                                                   "skipped"}:
                break
            for tr in list(self.in_flight):
                self.ended.append((self.in_flight.pop(tr), Outcome(TaskState.SUCCEEDED)))
            self.step(3)
        else:
            raise AssertionError(f"run {self.run_id} never ended: {self.rows()}")
        self.check_final()

    def check_final(self) -> None:
        rows = self.rows()
        with self.store.read() as tx:
            attempts = {(int(t), int(a)): str(s) for t, a, s in tx.all(
                "SELECT a.task_run_id, a.attempt, a.state FROM attempts a JOIN task_runs t"
                " ON t.id = a.task_run_id JOIN runs r ON r.id = t.run_id"
                " WHERE r.root_run_id = :r OR r.id = :r", {"r": self.run_id})}
            runs = {int(i): str(s) for i, s in tx.all(
                "SELECT id, state FROM runs WHERE root_run_id = :r OR id = :r",
                {"r": self.run_id})}
        halted = any(r["halt"] for r in rows if r["run"] == self.run_id)
        for row in rows:
            if row["kind"] == "barrier":
                continue
            state, n = row["state"], row["attempts"]
            assert state in TERMINAL, row
            mine = [attempts[(row["id"], k)] for k in range(1, n + 1)]
            assert all(a in {"succeeded", "failed", "lost", "cancelled"} for a in mine), mine
            if row["kind"] == "foreach" and n:
                items = [r for r in rows if r["parent"] == row["id"]]
                if items:  # expanded: it is what its items are
                    want = "succeeded" if all(i["state"] in ("succeeded",) for i in items) \
                        else state
                    assert state == want, (row, items)
                    assert state != "succeeded" or all(i["state"] == "succeeded"
                                                       for i in items)
                continue
            if row["child"] is not None and n and mine[-1] == "succeeded" and \
                    runs.get(row["child"]) in ("succeeded", "failed"):
                # A job task ends with its child run (retries apply to it as a whole).
                assert state == ("succeeded" if runs[row["child"]] == "succeeded"
                                 else state), row
                if state == "succeeded":
                    assert runs[row["child"]] == "succeeded"
                continue
            if n == 0:
                # Never started: skipped (or upstream_failed under continue), never failed.
                assert state in {"skipped", "upstream_failed", "cancelled"}, row
                if state == "upstream_failed":
                    assert not halted, row
                continue
            last = mine[-1]
            if state == "succeeded":
                assert last == "succeeded", (row, mine)
            elif state == "failed":
                assert last in {"failed", "lost"}, (row, mine)
                # Failed for good: no attempt left, unless a halt stopped the retries.
                retries = self.retries_of(row)
                assert n == retries + 1 or halted, (row, mine, retries)
            elif state == "cancelled":
                assert self.graph.on_failure == "cancel" or last == "cancelled", (row, mine)
            # Every attempt but the last failed (a retry follows only a failure).
            assert all(a in {"failed", "lost", "cancelled"} for a in mine[:-1]), (row, mine)
        # The run fails when any task failed for good, and only then.
        failed_any = any(r["state"] in {"failed", "cancelled"} for r in rows
                         if r["kind"] != "barrier")
        assert runs[self.run_id] == ("failed" if failed_any else "succeeded"), (runs, rows)

    def retries_of(self, row: dict[str, Any]) -> int:
        if row["run"] != self.run_id:
            return self.graph.child_retries
        return self.by_name[row["task"]].retries


@pytest.mark.slow
def test_engine_against_the_reference_model(store: Store) -> None:
    EngineModel.store = store
    run_state_machine_as_test(EngineModel, settings=settings(
        max_examples=12, stateful_step_count=12, deadline=None, derandomize=True,
        suppress_health_check=list(HealthCheck)))
