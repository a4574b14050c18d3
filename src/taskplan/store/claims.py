"""Claims: a task run handed to an agent, read back the same way wherever one is built.

A claim is made in one of two places: `ops.mark_running` on the general path (under the
fair-share rounds of engine/claims.py) and the server step on PostgreSQL (`call_server_step`
here, the function in store/sql/step_v2.sql). Both, and every read of a running task run as a
claim (recovery, a sub-job's end), return `Claim` built from the same column list.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from taskplan.store import ops
from taskplan.store.ops import loads

if TYPE_CHECKING:
    from taskplan.store.db import Store, Tx


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


# The columns of a claim, in Claim's field order, for a task run `t` joined to its run `r`.
_CLAIM_SELECT = (
    "SELECT t.id, t.run_id, r.version_id, t.task, t.kind, t.item, t.attempts,"
    " t.max_attempts, t.stage, t.pool, t.parent_id FROM task_runs t"
    " JOIN runs r ON r.id = t.run_id"
)


def _claim(row: Sequence[Any]) -> Claim:
    (task_run_id, run_id, version_id, task, kind, item, attempt, max_attempts, stage, pool,
     parent_id) = row
    return Claim(int(task_run_id), int(run_id), int(version_id), str(task), str(kind),
                 loads(item), int(attempt), int(max_attempts), stage, pool, parent_id)


def claim_ready(tx: Tx, ids: Sequence[int], agent_id: int, now: float, version_id: int
                ) -> list[Claim]:
    """Mark these ready task runs of one run (of version `version_id`) running for the agent;
    the ones that were still ready come back as claims."""
    claims = []
    for row in ops.mark_running(tx, ids, agent_id, now):
        (task_run_id, run_id, task, kind, item, attempt, max_attempts, stage, pool,
         parent_id) = row
        claims.append(Claim(int(task_run_id), int(run_id), version_id, str(task), str(kind),
                            loads(item), int(attempt), int(max_attempts), stage, pool,
                            parent_id))
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
    if not ids:
        return {}
    marks = ", ".join(str(int(i)) for i in ids)
    rows = tx.all(f"SELECT id, attempts FROM task_runs WHERE id IN ({marks})"
                  " AND state = 'running'")
    return {int(i): int(a) for i, a in rows}


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
    # and `e ->> 'r'` of taskplan_finish_successes in store/sql/step_v2.sql.
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
