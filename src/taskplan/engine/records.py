"""What the engine hands out and takes back: claims, outcomes, step results, and the changes
one transition collects before writing them."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from taskplan.dataclass import dataclass
from taskplan.model import TaskState
from taskplan.store.claims import Claim
from taskplan.store.ops import TaskRunRow

__all__ = ["Claim", "Delta", "Outcome", "StepResult"]


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


@dataclass(hot=True)
class StepResult:
    claims: list[Claim] = field(default_factory=list)
    finished_runs: list[tuple[int, str]] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    next_due: float | None = None  # earliest retry this step scheduled
    # Task runs the step ended without an attempt of their own, other than by succeeding:
    # (run id, task, state). A dependant skipped or upstream_failed, a foreach whose items
    # failed, what a halted run skipped or cancelled: the pipe progress names them.
    settled: list[tuple[int, str, str]] = field(default_factory=list)
    # Attempts the step ended itself, as agents report theirs: a job task whose child run
    # ended (its agent reported it started the run, and nothing more).
    ended: list[tuple[Claim, Outcome]] = field(default_factory=list)
    # Task runs whose failed attempt the step turned into a retry. A failure with attempts left
    # is not retried in a halted run (on_failure stop or cancel, a user's stop): only these
    # are "failed, retrying".
    retried: list[int] = field(default_factory=list)


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
    settled: list[tuple[int, str, str]] = field(default_factory=list)  # as StepResult's
