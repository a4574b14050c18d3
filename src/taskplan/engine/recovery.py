"""Timers and recovery: due retries, agent registration and leases, reaping lost agents, and
giving back claims an agent never started."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import replace

from taskplan import procs
from taskplan.engine import transitions
from taskplan.engine.context import Context
from taskplan.engine.records import NEVER_STARTED, Claim, Outcome, StepResult
from taskplan.model import TaskState
from taskplan.store import claims as claim_ops
from taskplan.store import notify_ops, ops

log = logging.getLogger(__name__)


def promote_retries(ctx: Context) -> float | None:
    """Make due retries ready; returns when the next one is due."""
    with ctx.store.tx() as tx:
        now = ctx.clock()
        ops.lock_runs(tx, ops.runs_with_due_retries(tx, now))
        due = ops.due_retries(tx, now)
        per_run: dict[int, int] = {}
        for _task_run_id, run_id in due:
            per_run[run_id] = per_run.get(run_id, 0) + 1
        for run_id, n in per_run.items():
            ops.bump_run(tx, run_id, ready=n)
        if due:
            ops.add_events(tx, [(now, r, t, "ready", "retry due") for t, r in due])
            tx.wake = True
        return ops.next_retry_due(tx)


def next_retry_due(ctx: Context) -> float | None:
    with ctx.store.read() as tx:
        return ops.next_retry_due(tx)


def register_agent(ctx: Context, name: str, host: str, pid: int, slots: int, lease: float,
                   labels: Collection[str] = ()) -> int:
    process = procs.identity(pid)
    with ctx.store.tx() as tx:
        agent_id = ops.insert_agent(tx, name, host, pid, slots, ctx.clock(), lease, process,
                                    ",".join(sorted(set(labels))))
    ctx.labels.agents[agent_id] = frozenset(labels)
    return agent_id


def heartbeat(ctx: Context, agent_id: int, lease: float, state: str | None = None) -> bool:
    with ctx.store.tx() as tx:
        return ops.heartbeat(tx, agent_id, ctx.clock(), lease, state) > 0


def agent_stopped(ctx: Context, agent_id: int) -> None:
    with ctx.store.tx() as tx:
        ops.set_agent_state(tx, agent_id, "stopped", ctx.clock())


def reap(ctx: Context, *, by_lease: bool = True) -> int:
    """Recover the task runs of agents whose lease expired, and at once those of agents of
    this machine whose process is gone (killed, crashed). Returns how many.

    With by_lease=False only the latter: a reaper that cannot trust its clock yet (it may just
    have jumped) still recovers the work of processes it knows are gone."""
    now = ctx.clock()
    machine = procs.machine()
    with ctx.store.read() as tx:
        dead: list[tuple[int, str | None]] = (
            [(a, None) for a in ops.expired_agents(tx, now)] if by_lease else [])
        local = ops.agents_of_machine(tx, machine) if machine else []
    dead += [(a.id, a.process) for a in local
             if procs.is_gone(a.pid, a.process) and (a.id, None) not in dead]
    count = 0
    for agent_id, process in dead:
        with ctx.store.tx() as tx:
            if not ops.mark_agent_lost(tx, agent_id, now, process):
                continue  # another reaper got it first
            held = claim_ops.running_claims_of_agent(tx, agent_id)
            result = StepResult()
            for claim in held:
                transitions.finish(ctx, tx, claim, Outcome(
                    TaskState.FAILED, error="agent lost", retry_now=True), now, result)
            count += len(held)
            notify_ops.agent_lost(tx, agent_id, [c.run_id for c in held], now)
            log.warning("agent lost: agent %s (%s); %d running task run(s) recovered",
                        agent_id, "its process is gone" if process else "lease expired",
                        len(held), extra={"event": "agent_lost", "agent_id": agent_id,
                                          "recovered": len(held)})
            tx.wake = True
    return count


def recovery_due(ctx: Context, agent_id: int | None, since: float) -> float | None:
    """When lease expiry would hand back work held by other agents that have given no sign
    of life (a heartbeat) since `since`, or None if there is no such work."""
    with ctx.store.read() as tx:
        return ops.recovery_due(tx, agent_id, since)


def release_unstarted(ctx: Context, agent_id: int, keep: Collection[int]) -> int:
    """Give back task runs held running for this agent that it never started.

    A claim whose commit reply was lost (the store went away mid-commit) may have been
    applied without the agent knowing it holds those task runs. They go back to `ready`
    without using up an attempt; the attempt counter still moves on, as the fencing token.
    Returns how many were given back.
    """
    now = ctx.clock()
    with ctx.store.tx() as tx:
        held = [c for c in claim_ops.running_claims_of_agent(tx, agent_id)
                if c.task_run_id not in keep]
        if not held:
            return 0
        ops.lock_runs(tx, [c.run_id for c in held])
        result = StepResult()
        for claim in sorted(held, key=lambda c: (c.run_id, c.task_run_id)):
            claim_ops.grant_extra_attempt(tx, claim.task_run_id)
            transitions.finish(ctx, tx, _with_extra_attempt(claim), Outcome(
                TaskState.FAILED, error=NEVER_STARTED, retry_now=True), now, result)
        tx.wake = True
    return len(held)


def _with_extra_attempt(claim: Claim) -> Claim:
    return replace(claim, max_attempts=claim.max_attempts + 1)


def still_running(ctx: Context, tokens: Sequence[tuple[int, int]]) -> set[int]:
    """Which of these (task_run_id, attempt) pairs are still running under that attempt."""
    if not tokens:
        return set()
    wanted = dict(tokens)
    with ctx.store.read() as tx:
        running = claim_ops.running_attempts(tx, list(wanted))
    return {i for i, attempt in running.items() if wanted.get(i) == attempt}
