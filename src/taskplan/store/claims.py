"""Claims: a task run handed to an agent, read back the same way wherever one is built.

A claim is made in one of two places: `claim_ready` here on the general path (under the
fair-share rounds of engine/claims.py) and the server step on PostgreSQL (`call_server_step`
here: `taskplan_step` of store/sql/step_v1.sql, which claims through `taskplan_claim` of
store/sql/step_v4.sql and records successes through `taskplan_finish_successes` of
store/sql/step_v3.sql). Both, and every read of a running task run as a
claim (recovery, a sub-job's end), return `Claim` built from the same column list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskplan.dataclass import dataclass
from taskplan.store.ops import loads, task_run_numbers

if TYPE_CHECKING:
    from taskplan.store.db import Store, Tx


@dataclass(frozen=True, hot=True)
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


# Where each field of a Claim is read from, in field order, which is also the order of the
# PostgreSQL row type `taskplan_claim_row` the server step returns (migration 0003;
# tests/store/test_server_step_keys.py ties them): a column of the task run, or (None) the
# version its run pinned.
CLAIM_COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("task_run_id", "id"), ("run_id", "run_id"), ("version_id", None), ("task", "task"),
    ("kind", "kind"), ("item", "item"), ("attempt", "attempts"),
    ("max_attempts", "max_attempts"), ("stage", "stage"), ("pool", "pool"),
    ("parent_id", "parent_id"),
)

# A running task run `t` joined to its run `r`, read as a claim.
_CLAIM_SELECT = "SELECT " + ", ".join(
    "r.version_id" if column is None else f"t.{column}" for _, column in CLAIM_COLUMNS
) + " FROM task_runs t JOIN runs r ON r.id = t.run_id"

# The task runs a claim marks running, returned as claims (the run's version is a bind: all
# of them belong to one run).
_MARK_RUNNING = (
    "UPDATE task_runs SET state = 'running', attempts = attempts + 1, agent_id = :a,"
    " started_at = :t, finished_at = NULL, exit_code = NULL, error = NULL"
    " WHERE id IN ({marks}) AND state = 'ready' RETURNING "
    + ", ".join("CAST(:v AS bigint)" if column is None else column
                for _, column in CLAIM_COLUMNS)
)


def _claim(row: Sequence[Any]) -> Claim:
    (task_run_id, run_id, version_id, task, kind, item, attempt, max_attempts, stage, pool,
     parent_id) = row
    return Claim(int(task_run_id), int(run_id), int(version_id), str(task), str(kind),
                 loads(item), int(attempt), int(max_attempts), stage, pool, parent_id)


def claim_ready(tx: Tx, ids: Sequence[int], agent_id: int, now: float, version_id: int
                ) -> list[Claim]:
    """Mark these ready task runs of one run (of version `version_id`) running for the agent,
    a new attempt each (its number is the fencing token); those that were still ready come
    back as claims, in the order of `ids`."""
    marks = ", ".join(f":i{n}" for n in range(len(ids)))
    params: dict[str, Any] = {f"i{n}": v for n, v in enumerate(ids)}
    params.update(a=agent_id, t=now, v=version_id)
    claims = [_claim(row) for row in tx.all(_MARK_RUNNING.format(marks=marks), params)]
    # RETURNING comes in whatever order the rows were found; the caller's order is the
    # claim's (best first), which decides, e.g., the order foreach claims are expanded in.
    place = {i: n for n, i in enumerate(ids)}
    claims.sort(key=lambda c: place[c.task_run_id])
    return claims


def running_claims_of_agent(tx: Tx, agent_id: int) -> list[Claim]:
    """What the agent holds: its task runs that are running, as the claims it was given."""
    rows = tx.all(_CLAIM_SELECT + " WHERE t.agent_id = :a AND t.state = 'running'",
                  {"a": agent_id})
    return [_claim(r) for r in rows]


def running_job_task(tx: Tx, task_run_id: int, child_run_id: int) -> Claim | None:
    """The `job` task that started run `child_run_id`, if it is still running for it."""
    row = tx.one(_CLAIM_SELECT + " WHERE t.id = :i AND t.state = 'running'"
                 " AND t.child_run_id = :c", {"i": task_run_id, "c": child_run_id})
    return None if row is None else _claim(row)


def running_attempts(tx: Tx, ids: Sequence[int]) -> dict[int, int]:
    """task run id -> its attempt number, for those of `ids` that are running."""
    return task_run_numbers(tx, "attempts", ids, "state = 'running'")


def grant_extra_attempt(tx: Tx, task_run_id: int) -> None:
    """An attempt that never started does not use up the task's retries."""
    tx.run("UPDATE task_runs SET max_attempts = max_attempts + 1 WHERE id = :i",
           {"i": task_run_id})


# -- the server step (PostgreSQL) ----------------------------------------------------------
@dataclass(frozen=True)
class Success:
    """A successful attempt, as the server step records it."""

    task_run_id: int
    run_id: int
    attempt: int
    ended_at: float
    exit_code: int | None
    result: str | None  # JSON text
    error: str | None


@dataclass
class ServerStep:
    claims: list[Claim]
    stale: list[int]  # successes fenced off: a newer owner or a cancel


STEP_CALL = ("SELECT * FROM taskplan_step(:agent, :now, :free, :root, :wake,"
              " CAST(:done AS jsonb))")


def success_payload(done: Sequence[Success]) -> str:
    # The keys are the record columns `jsonb_to_recordset(p_done) AS d(i, a, t, x, res, e)`
    # and `e ->> 'r'` of taskplan_finish_successes in store/sql/step_v3.sql.
    return json.dumps([{"i": s.task_run_id, "r": s.run_id, "a": s.attempt, "t": s.ended_at,
                        "x": s.exit_code, "res": s.result, "e": s.error} for s in done])


def call_server_step(store: Store, agent_id: int, now: float, free: int,
                     root_run_id: int | None, done: Sequence[Success]) -> ServerStep | None:
    """One agent step as one call of `taskplan_step`: record these successes and claim up to
    `free` task runs. None: the general path must take this step (the function wrote nothing,
    e.g. a success would end its run), or a transaction is open on this thread."""
    rows = store.call(STEP_CALL, {"agent": agent_id, "now": now, "free": free,
                                   "root": root_run_id, "wake": bool(done),
                                   "done": success_payload(done)}, wake=bool(done))
    if rows is None or (rows and rows[0][0] == "fallback"):
        return None
    step = ServerStep([], [])
    for tag, *columns in rows:
        if tag == "stale":
            step.stale.append(int(columns[0]))
        else:
            step.claims.append(_claim(columns))
    return step
