"""Reads behind "why does this task run wait?": a run's waiting task runs with what they wait
for, its pools, and the agents alive with their labels (engine/waiting.py words the reasons)."""

from __future__ import annotations

from dataclasses import field

from taskplan.dataclass import dataclass
from taskplan.model import TaskRunKind
from taskplan.store.db import Tx


@dataclass(frozen=True)
class LiveAgent:
    id: int
    name: str
    labels: frozenset[str]
    state: str  # alive | draining


@dataclass(frozen=True)
class Upstream:
    """An upstream a pending task run waits for."""

    task: str
    stage: int | None  # a stage barrier: the stage it closes; else None


@dataclass(frozen=True)
class PoolUse:
    size: int
    running: int
    # The running job tasks among them whose child run is this run or one of its ancestors,
    # as "TASK of run N": they wait for this run, so the room they hold never frees for it.
    held_above: tuple[str, ...] = ()


@dataclass(frozen=True)
class WaitingTaskRun:
    id: int
    task: str
    state: str
    stage: int | None
    pool: str | None
    ready_at: float | None
    labels: tuple[str, ...]  # what its agent needs
    upstreams: list[Upstream] = field(default_factory=list)  # not finished yet


@dataclass(frozen=True)
class RunWaitFacts:
    state: str
    halt: str | None
    halt_stage: int | None
    running: int
    max_parallel: int | None
    pin_agent_id: int | None
    tasks: list[WaitingTaskRun]
    pools: dict[str, PoolUse]  # the pools its ready task runs wait on
    agents: list[LiveAgent]  # alive or draining, lease not expired


def live_agents(tx: Tx, now: float) -> list[LiveAgent]:
    return [LiveAgent(int(i), str(n), frozenset(x for x in str(lb).split(",") if x), str(s))
            for i, n, lb, s in tx.all(
                "SELECT id, name, labels, state FROM agents WHERE state IN ('alive', 'draining')"
                " AND lease_until >= :t ORDER BY id", {"t": now})]


def wait_facts(tx: Tx, run_id: int, now: float) -> RunWaitFacts | None:
    run = tx.one("SELECT state, halt, halt_stage, running, max_parallel, pin_agent_id,"
                 " parent_task_run_id FROM runs WHERE id = :r", {"r": run_id})
    if run is None:
        return None
    tasks = [WaitingTaskRun(int(i), str(t), str(s), st, p, ra,
                            tuple(x for x in str(lb or "").split(",") if x))
             for i, t, s, st, p, ra, lb in tx.all(
                 "SELECT t.id, t.task, t.state, t.stage, t.pool, t.ready_at, l.labels"
                 " FROM task_runs t LEFT JOIN label_sets l ON l.id = t.label_set"
                 " WHERE t.run_id = :r AND t.state IN ('pending', 'ready', 'retrying')"
                 " AND t.kind <> 'barrier' ORDER BY t.id", {"r": run_id})]
    by_id = {t.id: t for t in tasks}
    if any(t.state == "pending" for t in tasks):
        # From the unfinished side: task_edges is keyed by (up_id, down_id).
        for down, name, kind, stage in tx.all(
                "SELECT e.down_id, u.task, u.kind, u.stage FROM task_runs u"
                " JOIN task_edges e ON e.up_id = u.id WHERE u.run_id = :r"
                " AND u.state IN ('pending', 'ready', 'running', 'retrying')"
                " AND u.parent_id IS NULL ORDER BY u.task", {"r": run_id}):
            waiting = by_id.get(int(down))
            if waiting is not None:
                waiting.upstreams.append(
                    Upstream(str(name), stage if kind == TaskRunKind.BARRIER else None))
    pools: dict[str, PoolUse] = {}
    names = sorted({t.pool for t in tasks if t.pool is not None and t.state == "ready"})
    if names:
        marks = ", ".join(f":p{i}" for i in range(len(names)))
        params: dict[str, object] = {f"p{i}": n for i, n in enumerate(names)}
        above = _job_tasks_above(tx, run[6])
        for name, size, used in tx.all(
                "SELECT p.name, p.size, (SELECT COUNT(*) FROM task_runs t WHERE t.state ="
                f" 'running' AND t.pool = p.name) FROM pools p WHERE p.name IN ({marks})",
                params):
            pools[str(name)] = PoolUse(int(size), int(used), tuple(
                f"{task} of run {rid}" for task, rid, pool in above if pool == name))
    state, halt, halt_stage, running, max_parallel, pin_agent_id, _ = run
    return RunWaitFacts(str(state), halt, halt_stage, int(running), max_parallel, pin_agent_id,
                        tasks, pools, live_agents(tx, now))


def _job_tasks_above(tx: Tx, parent: int | None) -> list[tuple[str, int, str]]:
    """(task, run id, pool) of the running job tasks in pools that started this run (its
    parent task run `parent`) and, up the chain, the runs above it."""
    found: list[tuple[str, int, str]] = []
    seen: set[int] = set()
    while parent is not None and parent not in seen:
        seen.add(parent)
        row = tx.one("SELECT t.task, t.run_id, t.pool, t.state, r.parent_task_run_id"
                     " FROM task_runs t JOIN runs r ON r.id = t.run_id WHERE t.id = :i",
                     {"i": parent})
        if row is None:
            break
        task, run_id, pool, state, parent = row
        if pool is not None and state == "running":
            found.append((str(task), int(run_id), str(pool)))
    return found
