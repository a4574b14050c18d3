"""What the engine hands out and takes back: claims, outcomes, step results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskplan.model import (
    TaskState,
)
from taskplan.store.ops import TaskRunRow


@dataclass(frozen=True)
class Claim:
    """A task run handed to an agent; (task_run_id, attempt) is its fencing token."""

    task_run_id: int
    run_id: int
    version_id: int
    task: str
    kind: str
    item: Any
    attempt: int
    max_attempts: int
    stage: int | None
    pool: str | None
    parent_id: int | None


@dataclass(frozen=True)
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


@dataclass
class StepResult:
    claims: list[Claim] = field(default_factory=list)
    finished_runs: list[tuple[int, str]] = field(default_factory=list)
    stale: list[int] = field(default_factory=list)
    next_due: float | None = None  # earliest retry this step scheduled


@dataclass
class _Delta:
    unfinished: int = 0
    running: int = 0
    ready: int = 0
    failed: int = 0
    events: list[tuple[float, int, int | None, str, str | None]] = field(default_factory=list)
    writes: list[tuple[int, str]] = field(default_factory=list)
    policy_failures: list[TaskRunRow] = field(default_factory=list)

