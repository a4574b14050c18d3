"""The JSON shapes of the public contract (`runs --json`, `status RUN --json`, `next --json`),
built in one place so that the CLI and the web API print exactly the same objects."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from taskplan.model import TaskRunKind
from taskplan.redact import mask_url

if TYPE_CHECKING:
    from taskplan.backfill import Backfill
    from taskplan.forecast import RunForecast
    from taskplan.model import ScheduleSpec
    from taskplan.store.console import AgentInfo
    from taskplan.store.reports import AttemptInfo, JobInfo, RunInfo, TaskRunInfo


def iso(ts: float | None) -> str | None:
    """Epoch seconds -> ISO 8601 in local time with its UTC offset."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="milliseconds")


def run_summary(r: RunInfo) -> dict[str, Any]:
    """One element of `runs --json`; `deadline` only for a run of a job that has one."""
    out = {
        "run_id": r.run_id, "job": r.job, "version": r.version, "state": r.state,
        "trigger": r.trigger, "created_at": iso(r.created_at),
        "started_at": iso(r.started_at), "finished_at": iso(r.finished_at),
    }
    deadline = run_deadline(r)
    if deadline is not None:
        out["deadline"] = deadline
    return out


def run_deadline(r: RunInfo, now: float | None = None) -> dict[str, Any] | None:
    """`{"at", "state"}` for a run of a job with a deadline, else None. `state`: pending (it
    counts from a start still to come), on_track, at_risk, missed; once the run ended: met,
    missed or not_met (failed or cancelled in time)."""
    if r.deadline_at is None and r.deadline_state is None:
        return None
    from taskplan.forecast.deadlines import standing

    state = standing(r.deadline_at, r.deadline_state, r.state, r.finished_at,
                     time.time() if now is None else now)
    return {"at": iso(r.deadline_at), "state": state}


def task_run(t: TaskRunInfo, waiting: str | None = None) -> dict[str, Any]:
    """One element of the `tasks` list of `status RUN --json`: `kind` tells a fan-out's group
    row (`foreach`, with `items`: counts by state) from its items (`item`) and sub-job tasks
    (`job`, with `child_run_id`, null until the child run exists) from the rest (`task`).
    `waiting` (why a pending, ready or retrying task run has not started:
    engine.waiting.explain) is on those rows only."""
    return {
        "name": t.name, "kind": t.kind, "item": t.item, "state": t.state,
        "attempts": t.attempts, "started_at": iso(t.started_at),
        "finished_at": iso(t.finished_at), "exit_code": t.exit_code, "result": t.result,
        "error": t.error,
        **({"items": t.items} if t.kind == TaskRunKind.FOREACH else {}),
        **({"child_run_id": t.child_run_id} if t.kind == TaskRunKind.JOB or t.child_run_id else {}),
        **({"waiting": waiting} if waiting is not None else {}),
    }


def attempt(a: AttemptInfo) -> dict[str, Any]:
    """One element of a task's `attempt_list` (`status RUN --attempts --json`)."""
    return {
        "attempt": a.attempt, "state": a.state, "agent": a.agent, "host": a.host,
        "started_at": iso(a.started_at), "finished_at": iso(a.finished_at),
        "exit_code": a.exit_code, "error": a.error, "output_bytes": a.output_bytes,
        "truncated": a.truncated,
    }


def run_status(info: RunInfo, tasks: list[TaskRunInfo],
               forecast: RunForecast | None = None,
               attempts: dict[int, list[AttemptInfo]] | None = None,
               waiting: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The object of `status RUN --json`; `forecast` only for a run that has one; with
    `attempts` (`--attempts`) each task also has `attempt_list`, every attempt in order;
    `waiting`: task_run_id -> why it waits (engine.waiting.explain)."""
    why = waiting or {}
    rows = [task_run(t, why.get(t.id)) for t in tasks]
    if attempts is not None:
        for row, t in zip(rows, tasks, strict=True):
            row["attempt_list"] = [attempt(a) for a in attempts.get(t.id, [])]
    out = {
        "run_id": info.run_id, "job": info.job, "version": info.version,
        "state": info.state, "params": masked_params(info.params),
        "created_at": iso(info.created_at),
        "started_at": iso(info.started_at), "finished_at": iso(info.finished_at),
        "tasks": rows,
    }
    deadline = run_deadline(info)
    if deadline is not None:
        out["deadline"] = deadline
    if forecast is not None:
        out["forecast"] = run_forecast(forecast)
    return out


def run_forecast(f: RunForecast) -> dict[str, Any]:
    """The `forecast` object of `status RUN --json`: predicted finish, the critical path
    (task names, first to last), each unfinished task run's predicted span, and the basis."""
    return {
        "finish_at": iso(f.finish_at), "critical_path": list(f.critical_path),
        "tasks": {name: {"start_at": iso(start), "finish_at": iso(end)}
                  for name, (start, end) in f.tasks.items()},
        "basis": f.basis,
    }


def planned_forecast(f: RunForecast, start: float) -> dict[str, Any]:
    """The object of `forecast JOB --json`: a run not started yet, created at `start`."""
    return {"makespan_s": round(f.finish_at - start, 3), **run_forecast(f)}


def next_firing(at: datetime, schedule: ScheduleSpec) -> dict[str, Any]:
    """One element of `next --json`: `schedule` is its name, else its index in the file."""
    return {"at": at.isoformat(),
            "schedule": schedule.name if schedule.name is not None else schedule.index}


def next_timeline(entries: list[tuple[datetime, ScheduleSpec, str | None]]
                  ) -> list[dict[str, Any]]:
    """`next --json`: firings, and calendar skips carrying their reason as `skipped`."""
    return [{**next_firing(at, s), **({"skipped": why} if why else {})}
            for at, s, why in entries]


def job(j: JobInfo, next_at: datetime | None, triggers: list[dict[str, Any]], *,
        enabled: bool = True, tags: Sequence[str] = ()) -> dict[str, Any]:
    """One element of `jobs --json`; a paused job has no next firing (`next` is null).
    `enabled`/`tags` are the current definition's (`enabled: false`, `tags:`)."""
    return {
        "job": j.name, "version": j.version, "versions": j.versions, "paused": j.paused,
        "next": None if j.paused or next_at is None else next_at.isoformat(),
        "last_run_id": j.last_run_id, "last_state": j.last_state,
        "last_finished_at": iso(j.last_finished_at), "triggers": triggers,
        "enabled": enabled, "tags": list(tags),
    }


def backfill(b: Backfill, dry_run: bool) -> dict[str, Any]:
    """The object of `backfill --json`: every firing in the range and its run."""
    return {
        "job": b.job, "backfill_id": b.backfill_id, "dry_run": dry_run,
        "from": b.start.isoformat(), "to": b.end.isoformat(),
        "firings": [{"at": f.at.isoformat(), "schedule": f.schedule, "run_id": f.run_id,
                     "new": f.new} for f in b.firings],
        "created": len(b.created),
    }


def firing(at: datetime, schedule: str, run_id: int | None, run_state: str | None,
           note: str | None, recorded: bool = True) -> dict[str, Any]:
    """One element of `firings JOB --json`: a schedule instant and what came of it."""
    made = run_id is not None
    return {
        "at": at.isoformat(), "schedule": schedule,
        "outcome": "run" if made else "skipped",
        "run_id": run_id, "run_state": run_state,
        "by": ("backfill" if note == "backfill" else "scheduler") if made else None,
        "reason": None if made else (note or "skipped"),
        "recorded": recorded,
    }


def agent(a: AgentInfo) -> dict[str, Any]:
    """One element of `agents --json`."""
    return {"id": a.id, "name": a.name, "host": a.host, "pid": a.pid, "slots": a.slots,
            "running": a.running, "state": a.state, "labels": a.labels,
            "started_at": iso(a.started_at), "heartbeat_at": iso(a.heartbeat_at),
            "lease_until": iso(a.lease_until)}


def masked_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """A run's params as shown: a URL's password in any text among them is ***, as on the
    console's run page (a param may carry a connection URL)."""
    return {k: _leaves(v, _mask_text) for k, v in params.items()}


def finite(value: Any) -> Any:
    """NaN and infinities (a SQL row's float) as null, at any depth: JSON has no such
    numbers (the CLI's --json and the web API write the same)."""
    return _leaves(value, _finite_number)


def _leaves(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """`value` (JSON-like: dicts, lists and tuples of scalars) with `leaf` applied to every
    scalar in it; tuples come back as lists, as JSON writes them."""
    if isinstance(value, dict):
        return {k: _leaves(v, leaf) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_leaves(v, leaf) for v in value]
    return leaf(value)


def _mask_text(value: Any) -> Any:
    return mask_url(value) if isinstance(value, str) else value


def _finite_number(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value
