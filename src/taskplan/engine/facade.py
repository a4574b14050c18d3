"""The engine's one public face: `Engine` holds the context (store, clock, caches) and hands
each call to the module that owns it. Every method is one short transaction on the store.

Where things happen: engine/claims.py (an agent's step: finishes and claims),
engine/transitions.py (a task's end, propagation, on_failure, a run's end),
engine/subruns.py (foreach items, job tasks), engine/commands.py (pause, delete, stop, cancel,
retry), engine/recovery.py (retries due, agents' leases), engine/runs.py (run creation),
engine/definitions.py (job versions and calendars), engine/triggers.py (cross-job triggers).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from taskplan.engine import (
    claims,
    commands,
    definitions,
    recovery,
    runs,
    subruns,
    triggers,
)
from taskplan.engine.commands import JobDeletion
from taskplan.engine.context import CalendarDays, Clock, Context, RunEndEffect
from taskplan.engine.records import Claim, Outcome, StepResult
from taskplan.model import BusinessCalendar, JobSpec, TaskSpec
from taskplan.store.db import Store, Tx
from taskplan.store.run_ops import RunMeta

# What follows a run's end, inside the transaction that ends it, in this order: the job task
# that started a sub-job run finishes with it (which may end the parent run, whose own
# effects then run), then the job's queued runs start and cross-job triggers fire.
RUN_END_EFFECTS: tuple[RunEndEffect, ...] = (subruns.child_run_ended, triggers.after_run_end)


class Engine:
    def __init__(self, store: Store, clock: Clock = time.time, *,
                 one_by_one: bool = False) -> None:
        """`one_by_one`: the reference path (every finish recorded on its own, in Python on
        every backend) that tests compare the batched and server-side steps against."""
        self.ctx = Context(store, clock, run_end_effects=RUN_END_EFFECTS,
                           one_by_one=one_by_one)

    @property
    def store(self) -> Store:
        return self.ctx.store

    @property
    def clock(self) -> Clock:
        return self.ctx.clock

    @property
    def default_tz(self) -> str:
        """The zone of jobs that name none (taskplan.toml `timezone`)."""
        return self.ctx.default_tz

    @default_tz.setter
    def default_tz(self, zone: str) -> None:
        self.ctx.default_tz = zone

    @property
    def shared_connections(self) -> dict[str, str]:
        """taskplan.toml's [connections] (name -> URL, references unresolved)."""
        return self.ctx.shared_connections

    @shared_connections.setter
    def shared_connections(self, connections: dict[str, str]) -> None:
        self.ctx.shared_connections = connections

    @property
    def configured_pools(self) -> dict[str, int]:
        """taskplan.toml's [pools]: applying a job does not resize them."""
        return self.ctx.configured_pools

    @configured_pools.setter
    def configured_pools(self, pools: dict[str, int]) -> None:
        self.ctx.configured_pools = pools

    # -- definitions ----------------------------------------------------------------------
    def apply(self, spec: JobSpec) -> tuple[int, int, bool]:
        return definitions.apply(self.ctx, spec)

    def apply_preview(self, spec: JobSpec) -> tuple[int, bool]:
        return definitions.apply_preview(self.ctx, spec)

    def check_calls(self, specs: Sequence[JobSpec]) -> None:
        definitions.check_calls(self.ctx, specs)

    def unknown_job_names(self, specs: Sequence[JobSpec]) -> list[str]:
        return definitions.unknown_job_names(self.ctx, specs)

    def apply_calendar(self, cal: BusinessCalendar) -> tuple[int, bool]:
        return definitions.apply_calendar(self.ctx, cal)

    def calendar_preview(self, cal: BusinessCalendar) -> tuple[int, bool]:
        return definitions.calendar_preview(self.ctx, cal)

    def business_calendars(self) -> dict[str, BusinessCalendar]:
        return definitions.business_calendars(self.ctx)

    def closed_days(self) -> CalendarDays:
        return definitions.closed_days(self.ctx)

    def job_spec(self, version_id: int, tx: Tx | None = None) -> JobSpec:
        return definitions.job_spec(self.ctx, version_id, tx)

    def task_spec(self, version_id: int, name: str) -> TaskSpec:
        return definitions.task_spec(self.ctx, version_id, name)

    def current_version(self, job_name: str) -> int:
        return definitions.current_version(self.ctx, job_name)

    # -- runs -----------------------------------------------------------------------------
    def create_run(self, version_id: int, params: dict[str, Any] | None = None, *,
                   trigger: str = "manual", trigger_ref: str | None = None,
                   parent_task_run_id: int | None = None, root_run_id: int | None = None,
                   tx: Tx | None = None, queued: bool = False,
                   fire_at: float | None = None, pin_agent_id: int | None = None) -> int:
        return runs.create_run(self.ctx, version_id, params, trigger=trigger,
                               trigger_ref=trigger_ref, parent_task_run_id=parent_task_run_id,
                               root_run_id=root_run_id, tx=tx, queued=queued,
                               fire_at=fire_at, pin_agent_id=pin_agent_id)

    def started_deadlines(self, tx: Tx, run_ids: list[int]) -> None:
        """Queued runs `tx` just started: fix their `of: start` deadlines, and end those with
        nothing to run (runs.queued_runs_started)."""
        runs.queued_runs_started(self.ctx, tx, run_ids)

    def pin_run(self, run_id: int, agent_id: int | None) -> None:
        runs.pin_run(self.ctx, run_id, agent_id)

    def run_state(self, run_id: int) -> str:
        return definitions.run_state(self.ctx, run_id)

    def run_meta(self, run_id: int) -> RunMeta:
        """A run's version, params and fire time (cached: they never change)."""
        return definitions.run_meta(self.ctx, run_id)

    # -- the agent's step, foreach and job tasks ------------------------------------------
    def step(self, agent_id: int, finished: Sequence[tuple[Claim, Outcome]], free: int,
             root_run_id: int | None = None) -> StepResult:
        return claims.step(self.ctx, agent_id, finished, free, root_run_id)

    def expand_foreach(self, claim: Claim, chunks: Iterable[Sequence[Any]]) -> int | None:
        return subruns.expand_foreach(self.ctx, claim, chunks)

    def start_child_run(self, claim: Claim, job_name: str, params: dict[str, Any]
                        ) -> int | None:
        return subruns.start_child_run(self.ctx, claim, job_name, params)

    # -- what users ask -------------------------------------------------------------------
    def pause_job(self, name: str) -> bool:
        return commands.pause_job(self.ctx, name)

    def resume_job(self, name: str) -> bool:
        return commands.resume_job(self.ctx, name)

    def pause_schedule(self, name: str, key: str) -> bool:
        return commands.pause_schedule(self.ctx, name, key)

    def resume_schedule(self, name: str, key: str) -> bool:
        return commands.resume_schedule(self.ctx, name, key)

    def paused_schedules(self, name: str) -> set[str]:
        return commands.paused_schedules(self.ctx, name)

    def delete_job(self, name: str, *, force: bool = False, purge_history: bool = False,
                   dry_run: bool = False) -> JobDeletion:
        return commands.delete_job(self.ctx, name, force=force, purge_history=purge_history,
                                   dry_run=dry_run)

    def cancel_run(self, run_id: int) -> str:
        return commands.cancel_run(self.ctx, run_id)

    def stop_run(self, run_id: int) -> str:
        return commands.stop_run(self.ctx, run_id)

    def stale_pin(self, run_id: int) -> tuple[str, int, int] | None:
        return commands.stale_pin(self.ctx, run_id)

    def retry_run(self, run_id: int, task: str | None = None, *, latest: bool = False) -> int:
        return commands.retry_run(self.ctx, run_id, task, latest=latest)

    # -- timers, agents and recovery ------------------------------------------------------
    def promote_retries(self) -> float | None:
        return recovery.promote_retries(self.ctx)

    def next_retry_due(self) -> float | None:
        return recovery.next_retry_due(self.ctx)

    def register_agent(self, name: str, host: str, pid: int, slots: int, lease: float,
                       labels: Collection[str] = ()) -> int:
        return recovery.register_agent(self.ctx, name, host, pid, slots, lease, labels)

    def heartbeat(self, agent_id: int, lease: float, state: str | None = None) -> bool:
        return recovery.heartbeat(self.ctx, agent_id, lease, state)

    def agent_stopped(self, agent_id: int) -> None:
        recovery.agent_stopped(self.ctx, agent_id)

    def reap(self, *, by_lease: bool = True) -> int:
        return recovery.reap(self.ctx, by_lease=by_lease)

    def recovery_due(self, agent_id: int | None, since: float) -> float | None:
        return recovery.recovery_due(self.ctx, agent_id, since)

    def release_unstarted(self, agent_id: int, keep: Collection[int]) -> int:
        return recovery.release_unstarted(self.ctx, agent_id, keep)

    def still_running(self, tokens: Sequence[tuple[int, int]]) -> set[int]:
        return recovery.still_running(self.ctx, tokens)
