"""Why a task run waits: one line per waiting task run of a run, for `status` and the web UI.

The reasons, in the order they are checked for a ready task run: the run is queued or
stopping, `max_parallel` is reached, its pool is full, the run is pinned to the foreground
process that started it, no agent is alive, no live agent has the labels it needs; otherwise
every capable agent is busy. A pending task run waits for its upstreams (a stage barrier reads
"stage N not finished"); a retrying one for its retry time.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import datetime
from typing import TYPE_CHECKING

from taskplan.model import Halt, JobSpec, RunState, TaskState
from taskplan.store.db import Store, Tx
from taskplan.store.routing import RunWaitFacts, WaitingTaskRun, live_agents, wait_facts

if TYPE_CHECKING:
    from taskplan.store.console import AgentInfo

MAX_NAMES = 5  # upstream names listed before "and N more"


def explain(store: Store, run_id: int, now: float | None = None) -> dict[int, str]:
    """task_run_id -> a one-line reason, for every pending, ready or retrying task run of the
    run (stage barriers excluded). Empty for an unknown or finished run."""
    now = time.time() if now is None else now
    with store.read() as tx:
        return explain_in(tx, run_id, now)


def explain_in(tx: Tx, run_id: int, now: float) -> dict[int, str]:
    """`explain` inside a read the caller holds, so the reasons agree with the task runs it
    read in the same transaction (a task run read as ready always has its reason)."""
    facts = wait_facts(tx, run_id, now)
    if facts is None or facts.state not in (RunState.QUEUED, RunState.RUNNING, RunState.STOPPING):
        return {}
    gone = _gone_agents(tx)
    if gone:
        # Killed, their leases still running: they take nothing, nor are they busy.
        facts = dataclasses.replace(facts, agents=[a for a in facts.agents if a.id not in gone])
    pin_lost = (_pin_lost(tx, facts.pin_agent_id, now, gone)
                if facts.pin_agent_id is not None else None)
    return {t.id: reason(facts, t, now, pin_lost) for t in facts.tasks}


def _gone_agents(tx: Tx) -> dict[int, int]:
    """Agent id -> pid, of the live agents of this machine whose process is gone."""
    from taskplan import procs
    from taskplan.store import ops

    where = procs.machine()
    if where is None:
        return {}
    return {a.id: a.pid for a in ops.agents_of_machine(tx, where)
            if procs.is_gone(a.pid, a.process)}


def _pin_lost(tx: Tx, pin_agent_id: int, now: float, gone: dict[int, int]) -> str | None:
    """Why the run's foreground process will not take its task runs, when it is gone (this
    machine) or silent past its lease: the run stays pinned to it until it is recovered."""
    from taskplan.store import console

    if pin_agent_id in gone:
        return (f"the run's foreground process (pid {gone[pin_agent_id]}) is gone; it is"
                " recovered as soon as an agent or `taskplan run` starts on this machine")
    agents = console.agents(tx, now, include_gone=False)
    for agent in agents:
        if agent.id == pin_agent_id and agent.state == "expired":
            return (f"the run's foreground process {agent.name} ({agent.host}) has not"
                    f" renewed its lease since {clock(agent.heartbeat_at, now)}; it is"
                    f" recovered {_recovered_by(agents)}")
    return None


def _recovered_by(agents: list[AgentInfo]) -> str:
    """When the work of an agent whose lease ran out comes back: at the next beat of an agent
    (or `taskplan run`) whose own lease still runs, else when one starts."""
    return ("at the next heartbeat of an agent alive" if any(a.state != "expired"
                                                            for a in agents)
            else "as soon as an agent or `taskplan run` starts")


def orphans_in(tx: Tx, run_id: int, now: float | None = None) -> dict[int, str]:
    """task_run_id -> a one-line note, for the run's running task runs whose agent is known to
    be gone or has gone silent: it ran on this machine and its process is gone (a killed
    `taskplan run` or agent), so nothing recovers them until an agent or run starts here or
    another agent's beat finds the lease expired; or its lease ran out (an agent of another
    machine, dead or cut off), so the next beat of a live agent recovers them."""
    from taskplan.store import console
    from taskplan.store.claims import running_claims_of_agent

    now = time.time() if now is None else now
    notes = {claim.task_run_id: f"its agent (pid {pid}) is gone; it is recovered as soon as an"
                                " agent or `taskplan run` starts on this machine"
             for agent_id, pid in _gone_agents(tx).items()
             for claim in running_claims_of_agent(tx, agent_id) if claim.run_id == run_id}
    agents = console.agents(tx, now, include_gone=False)
    silent = [a for a in agents if a.state == "expired" and a.running]
    if not silent:
        return notes
    recovery = _recovered_by(agents)
    for agent in silent:
        for claim in running_claims_of_agent(tx, agent.id):
            if claim.run_id == run_id and claim.task_run_id not in notes:
                notes[claim.task_run_id] = (
                    f"its agent {agent.name} ({agent.host}) has not renewed its lease since"
                    f" {clock(agent.heartbeat_at, now)}; it is recovered {recovery}")
    return notes


def reason(facts: RunWaitFacts, t: WaitingTaskRun, now: float,
           pin_lost: str | None = None) -> str:
    # A halted run starts nothing more (finish_stage: above the failed task's stage), and a
    # task waiting for a retry there does not retry.
    halted = facts.halt is not None and not (facts.halt == Halt.FINISH_STAGE
                                             and (t.stage or 0) <= (facts.halt_stage or 0))
    if t.state == TaskState.RETRYING:
        if halted:
            return "run stopping: it does not retry"
        return f"retry at {clock(t.ready_at, now)}" if t.ready_at is not None else "retrying"
    if halted:
        return "run stopping: nothing new starts"
    if t.state == TaskState.PENDING:
        return _upstreams(t)
    if facts.state == RunState.QUEUED:
        return "run queued: it starts when the job's active run ends"
    if facts.max_parallel is not None and facts.running >= facts.max_parallel:
        return f"max_parallel {facts.max_parallel} reached"
    if t.pool is not None and t.pool in facts.pools:
        pool = facts.pools[t.pool]
        size, used = pool.size, pool.running
        if used >= size:
            if not pool.held_above:
                return f"pool {t.pool} full ({used}/{size})"
            # A job task holding room in the pool waits for this run: a deadlock once such
            # tasks hold all of it (a pool on a job task is held until its child run ends).
            return (f"pool {t.pool} full ({used}/{size}), held by job task "
                    + ", ".join(pool.held_above) + ", which waits for this run"
                    + (": it never frees" if len(pool.held_above) >= size else ""))
    if pin_lost is not None:
        return pin_lost
    alive = [a for a in facts.agents if a.state == "alive"]
    pinned = next((a for a in facts.agents if a.id == facts.pin_agent_id), None)
    if pinned is not None:
        if not set(t.labels) <= pinned.labels:
            return ("the foreground agent lacks labels "
                    + ", ".join(sorted(set(t.labels) - pinned.labels)))
        return f"waiting for a free slot of {pinned.name} (the run's foreground process)"
    if not alive:
        return "no agent alive" + (" (one is draining)" if facts.agents else "")
    capable = [a for a in alive if set(t.labels) <= a.labels]
    if not capable:
        return "waiting for an agent with labels " + ", ".join(t.labels)
    return "waiting for a free slot (every capable agent is busy)"


def _upstreams(t: WaitingTaskRun) -> str:
    names = [u.task for u in t.upstreams if u.stage is None]
    stages = sorted({u.stage for u in t.upstreams if u.stage is not None})
    parts: list[str] = []
    if names:
        shown = ", ".join(names[:MAX_NAMES])
        more = len(names) - MAX_NAMES
        parts.append("waiting for upstreams: " + shown + (f" and {more} more" if more > 0
                                                          else ""))
    parts.extend(f"stage {s} not finished" for s in stages)
    return "; ".join(parts) or "waiting for upstreams"


def clock(ts: float, now: float) -> str:
    """A local time of day, with the date when it is not today."""
    at = datetime.fromtimestamp(ts)
    same_day = at.date() == datetime.fromtimestamp(now).date()
    return at.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")


def unserved(store: Store, spec: JobSpec, now: float | None = None,
             own_labels: tuple[str, ...] | None = None) -> list[str]:
    """Why no live agent could take (some of) a new run of this job: [] when one can.

    For `run --detach`: "no agent alive", or, per set of labels no live agent has all of,
    "no live agent has labels etl, gpu (needed by load, score)". For `run --distributed`,
    `own_labels` are those of the calling process's own agent, which is not registered yet.
    """
    now = time.time() if now is None else now
    with store.read() as tx:
        gone = _gone_agents(tx)  # killed a moment ago: they will not take it
        label_sets = [a.labels for a in live_agents(tx, now)
                      if a.state == "alive" and a.id not in gone]
    if own_labels is not None:
        label_sets.append(frozenset(own_labels))
    if not label_sets:
        return ["no agent alive"]
    needs: dict[tuple[str, ...], list[str]] = {}
    for task in spec.tasks:
        if task.agent_labels and not any(set(task.agent_labels) <= have for have in label_sets):
            needs.setdefault(task.agent_labels, []).append(task.name)
    return [f"no live agent has labels {', '.join(labels)} (needed by {', '.join(names)})"
            for labels, names in sorted(needs.items())]
