"""The buttons of the console and the POST endpoints of the API: the engine's own commands,
the same calls the CLI makes, with the outcome as a small JSON object."""

from __future__ import annotations

from typing import Any

from taskplan.errors import UsageError
from taskplan.model import JobSpec
from taskplan.rules import declared_params
from taskplan.web.views import Ctx


def check_params(spec: JobSpec, given: Any) -> dict[str, Any]:
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise UsageError("params must be an object of name: value")
    return declared_params(spec, given)


def start_run(ctx: Ctx, job: str, params: Any) -> dict[str, Any]:
    """Run now: what `taskplan run JOB --detach` does (a manual run of the current version)."""
    engine = ctx.engine
    version_id = engine.current_version(job)
    checked = check_params(engine.job_spec(version_id), params)
    run_id = engine.create_run(version_id, checked)
    return {"run_id": run_id, "job": job, "state": engine.run_state(run_id)}


def stop(ctx: Ctx, run_id: int) -> dict[str, Any]:
    """`taskplan stop RUN` (ConflictError, a 409, once the run has ended)."""
    return {"run_id": run_id, "state": ctx.engine.stop_run(run_id)}


def cancel(ctx: Ctx, run_id: int) -> dict[str, Any]:
    """`taskplan cancel RUN`."""
    return {"run_id": run_id, "state": ctx.engine.cancel_run(run_id)}


def retry(ctx: Ctx, run_id: int, task: str | None = None, latest: bool = False
          ) -> dict[str, Any]:
    """`taskplan retry RUN [--task T] [--latest] --detach`: reset what did not succeed; agents
    run it. The engine refuses (409) a run still going and one with nothing left to retry."""
    count = ctx.engine.retry_run(run_id, task, latest=latest)
    return {"run_id": run_id, "reset": count, "state": ctx.engine.run_state(run_id)}


def set_paused(ctx: Ctx, job: str, paused: bool) -> dict[str, Any]:
    """`taskplan pause|resume JOB`: schedules and triggers of a paused job create no runs."""
    engine = ctx.engine
    changed = engine.pause_job(job) if paused else engine.resume_job(job)
    return {"job": job, "paused": paused, "changed": changed}


def set_schedule_paused(ctx: Ctx, job: str, key: str, paused: bool) -> dict[str, Any]:
    """`taskplan pause|resume JOB --schedule KEY`: one schedule, the others fire as usual."""
    engine = ctx.engine
    changed = (engine.pause_schedule(job, key) if paused
               else engine.resume_schedule(job, key))
    return {"job": job, "schedule": key, "paused": paused, "changed": changed}
