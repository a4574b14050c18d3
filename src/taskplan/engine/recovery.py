"""Timers and recovery: due retries, agent registration and leases, reaping lost agents."""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from taskplan import procs
from taskplan.engine.commands import Commands
from taskplan.engine.records import Claim, Outcome, StepResult
from taskplan.model import (
    TaskState,
)
from taskplan.store import notify_ops, ops
from taskplan.store.ops import loads

log = logging.getLogger(__name__)


class Engine(Commands):
    """The engine: every public method is one short transaction on the store."""

    # -- timers and recovery ----------------------------------------------------------------
    def promote_retries(self) -> float | None:
        """Make due retries ready; returns when the next one is due."""
        with self.store.tx() as tx:
            now = self.clock()
            ops.lock_runs(tx, ops.runs_with_due_retries(tx, now))
            rows = ops.due_retries(tx, now)
            per_run: dict[int, int] = {}
            for _tr, run_id in rows:
                per_run[int(run_id)] = per_run.get(int(run_id), 0) + 1
            for run_id, n in per_run.items():
                ops.bump_run(tx, run_id, ready=n)
            if rows:
                ops.add_events(tx, [(now, int(r), int(t), "ready", "retry due") for t, r in rows])
                tx.wake = True
            return ops.next_retry_due(tx)

    def next_retry_due(self) -> float | None:
        with self.store.read() as tx:
            return ops.next_retry_due(tx)

    def register_agent(self, name: str, host: str, pid: int, slots: int, lease: float,
                       labels: Collection[str] = ()) -> int:
        process = procs.identity(pid)
        with self.store.tx() as tx:
            agent_id = ops.insert_agent(tx, name, host, pid, slots, self.clock(), lease, process,
                                        ",".join(sorted(set(labels))))
        self._agent_labels[agent_id] = frozenset(labels)
        return agent_id

    def heartbeat(self, agent_id: int, lease: float, state: str | None = None) -> bool:
        with self.store.tx() as tx:
            return ops.heartbeat(tx, agent_id, self.clock(), lease, state) > 0

    def agent_stopped(self, agent_id: int) -> None:
        with self.store.tx() as tx:
            ops.set_agent_state(tx, agent_id, "stopped", self.clock())

    def reap(self) -> int:
        """Recover the task runs of agents whose lease expired, and at once those of agents
        of this machine whose process is gone (killed, crashed). Returns how many."""
        now = self.clock()
        machine = procs.machine()
        with self.store.read() as tx:
            dead: list[tuple[int, str | None]] = [(a, None) for a in ops.expired_agents(tx, now)]
            local = ops.agents_of_machine(tx, machine) if machine else []
        dead += [(a, process) for a, pid, process in local
                 if procs.is_gone(pid, process) and (a, None) not in dead]
        count = 0
        for agent_id, process in dead:
            with self.store.tx() as tx:
                if not ops.mark_agent_lost(tx, agent_id, now, process):
                    continue  # another reaper got it first
                rows = tx.all(
                    "SELECT t.id, t.run_id, r.version_id, t.task, t.kind, t.item, t.attempts,"
                    " t.max_attempts, t.stage, t.pool, t.parent_id FROM task_runs t"
                    " JOIN runs r ON r.id = t.run_id WHERE t.agent_id = :a"
                    " AND t.state = 'running'", {"a": agent_id})
                result = StepResult()
                for r in rows:
                    claim = Claim(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]),
                                  loads(r[5]), int(r[6]), int(r[7]), r[8], r[9], r[10])
                    self._finish(tx, claim, Outcome(TaskState.FAILED, error="agent lost",
                                                    retry_now=True), now, result)
                    count += 1
                notify_ops.agent_lost(tx, agent_id, [int(r[1]) for r in rows], now)
                log.warning("agent lost: agent %s (%s); %d running task run(s) recovered",
                            agent_id, "its process is gone" if process else "lease expired",
                            len(rows), extra={"event": "agent_lost", "agent_id": agent_id,
                                              "recovered": len(rows)})
                tx.wake = True
        return count

    def recovery_due(self, agent_id: int | None, since: float) -> float | None:
        """When lease expiry would hand back work held by other agents that have given no
        sign of life (a heartbeat) since `since`, or None if there is no such work."""
        with self.store.read() as tx:
            return ops.recovery_due(tx, agent_id, since)

    def release_unstarted(self, agent_id: int, keep: Collection[int]) -> int:
        """Give back task runs held running for this agent that it never started.

        A claim whose commit reply was lost (the store went away mid-commit) may have been
        applied without the agent knowing it holds those task runs. They go back to `ready`
        without using up an attempt; the attempt counter still moves on, as the fencing token.
        Returns how many were given back.
        """
        now = self.clock()
        with self.store.tx() as tx:
            rows = [r for r in tx.all(
                "SELECT t.id, t.run_id, r.version_id, t.task, t.kind, t.item, t.attempts,"
                " t.max_attempts, t.stage, t.pool, t.parent_id FROM task_runs t"
                " JOIN runs r ON r.id = t.run_id WHERE t.agent_id = :a AND t.state = 'running'",
                {"a": agent_id}) if int(r[0]) not in keep]
            if not rows:
                return 0
            ops.lock_runs(tx, [int(r[1]) for r in rows])
            result = StepResult()
            for r in sorted(rows, key=lambda r: (int(r[1]), int(r[0]))):
                tx.run("UPDATE task_runs SET max_attempts = max_attempts + 1 WHERE id = :i",
                       {"i": int(r[0])})
                claim = Claim(int(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4]),
                              loads(r[5]), int(r[6]), int(r[7]) + 1, r[8], r[9], r[10])
                self._finish(tx, claim, Outcome(
                    TaskState.FAILED, error="claimed during a store outage, never started",
                    retry_now=True), now, result)
            tx.wake = True
        return len(rows)

    def still_running(self, tokens: Sequence[tuple[int, int]]) -> set[int]:
        """Which of these (task_run_id, attempt) pairs are still running under that attempt."""
        if not tokens:
            return set()
        wanted = dict(tokens)
        marks = ", ".join(str(int(i)) for i in wanted)
        with self.store.read() as tx:
            rows = tx.all(
                f"SELECT id, attempts FROM task_runs WHERE id IN ({marks}) AND state = 'running'")
        return {int(i) for i, a in rows if wanted.get(int(i)) == int(a)}

