"""What the engine hands out and takes back: claims, outcomes, step results, and the changes
one transition collects before writing them."""

from __future__ import annotations

from dataclasses import field
from typing import Any, NamedTuple

from taskplan.dataclass import dataclass
from taskplan.model import TaskState
from taskplan.store.claims import Claim
from taskplan.store.ops import TaskRunRow

__all__ = ["NEVER_STARTED", "AttemptEnd", "Claim", "Delta", "End", "Outcome", "RunEnd",
           "StepResult", "TaskEnd", "UnnamedEnds"]


# The error of an attempt given back unstarted (`release_unstarted`): it used no try, since
# its task run's max_attempts grew by one with it.
NEVER_STARTED = "claimed during a store outage, never started"

@dataclass(frozen=True, hot=True)
class Outcome:
    state: TaskState  # SUCCEEDED or FAILED
    exit_code: int | None = None
    result: Any = None
    error: str | None = None
    retry_now: bool = False  # an agent was lost: retry at once, no delay
    # A foreach parent whose items `expand_foreach` inserted, or a job task whose child run
    # `start_child_run` started: already recorded, the step has nothing left to write.
    expanded: bool = False
    # When the attempt really ended (the slot's clock); recorded as finished_at, so history
    # does not include the time the outcome waited for the dispatcher's next transaction.
    ended_at: float | None = None

    def ended(self, now: float) -> float:
        """When the attempt ended, never after `now` (a slot's clock may run ahead)."""
        return now if self.ended_at is None else min(self.ended_at, now)


# Named tuples, not dataclasses: a halt or a cascade of skipped dependants makes one per task
# run inside the step's transaction.
class TaskEnd(NamedTuple):
    """A task run the step ended without an attempt of its own: a dependant skipped or
    upstream_failed, a foreach when its items are done, what a halted run skips or cancels.
    `detail` says why, where the state alone does not (a foreach's failed items)."""

    run_id: int
    task_run_id: int
    task: str
    state: str
    detail: str | None = None


class AttemptEnd(NamedTuple):
    """An attempt the step ended itself, as agents report theirs: a job task's, when its child
    run ended (its agent reported only that it started the run)."""

    claim: Claim
    outcome: Outcome


class RunEnd(NamedTuple):
    run_id: int
    state: str


class UnnamedEnds(NamedTuple):
    """Task runs a halt ended that are not named one by one (a foreach's items not running:
    there may be a million): only how many, in one state."""

    run_id: int
    state: str
    number: int


End = TaskEnd | AttemptEnd | RunEnd | UnnamedEnds


@dataclass(hot=True)
class StepResult:
    claims: list[Claim] = field(default_factory=list)
    finished_runs: list[tuple[int, str]] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    next_due: float | None = None  # earliest retry this step scheduled
    # What the step ended besides the attempts it was given, in the order it ended them: a
    # child run's tasks, then the child run, then its job task, then that task's dependants and
    # maybe the parent run. The pipe progress prints them in this order.
    ends: list[End] = field(default_factory=list)
    # Task runs whose failed attempt the step turned into a retry. A failure with attempts left
    # is not retried in a halted run (on_failure stop or cancel, a user's stop): only these
    # are "failed, retrying".
    retried: list[int] = field(default_factory=list)
    # The claim left out a run another transaction held (PostgreSQL), which may still have
    # ready work for this agent, and the holder's commit may wake nobody (a server step that
    # only claimed): the agent looks again soon rather than at its next heartbeat.
    contended: bool = False


@dataclass(hot=True)
class Delta:
    """What settling some task runs of one run changed, written once at the step's close."""

    unfinished: int = 0
    running: int = 0
    ready: int = 0
    failed: int = 0
    events: list[tuple[float, int, int | None, str, str | None]] = field(default_factory=list)
    writes: list[tuple[int, str]] = field(default_factory=list)
    policy_failures: list[TaskRunRow] = field(default_factory=list)
    ends: list[TaskEnd] = field(default_factory=list)  # for StepResult.ends
