"""The buttons of the console and the POST endpoints of the API: the engine's own commands,
the same calls the CLI makes, with the outcome as a small JSON object."""

from __future__ import annotations

from typing import Any

from taskplan.errors import UsageError
from taskplan.model import TERMINAL_RUN_STATES
from taskplan.web.errors import ConflictError
from taskplan.web.views import Ctx, run_or_404


def check_params(declared: dict[str, Any], given: Any) -> dict[str, Any]:
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise UsageError("params must be an object of name: value")
    unknown = sorted(k for k in given if k not in declared)
    if unknown:
        known = ", ".join(sorted(declared)) or "none"
        raise UsageError(f"unknown param {unknown[0]!r} (the job declares: {known})")
    return dict(given)


def start_run(ctx: Ctx, job: str, params: Any) -> dict[str, Any]:
    """Run now: what `taskplan run JOB --detach` does (a manual run of the current version)."""
    engine = ctx.engine
    version_id = engine.current_version(job)
    checked = check_params(engine.job_spec(version_id).params, params)
    run_id = engine.create_run(version_id, checked)
    return {"run_id": run_id, "job": job, "state": engine.run_state(run_id)}


def _halt(ctx: Ctx, run_id: int, verb: str) -> dict[str, Any]:
    info = run_or_404(ctx, run_id)
    if info.state in TERMINAL_RUN_STATES:
        raise ConflictError(f"run {run_id} already {info.state}: nothing to {verb}")
    engine = ctx.engine
    state = engine.stop_run(run_id) if verb == "stop" else engine.cancel_run(run_id)
    return {"run_id": run_id, "state": state}


def stop(ctx: Ctx, run_id: int) -> dict[str, Any]:
    return _halt(ctx, run_id, "stop")


def cancel(ctx: Ctx, run_id: int) -> dict[str, Any]:
    return _halt(ctx, run_id, "cancel")


def retry(ctx: Ctx, run_id: int, task: str | None = None) -> dict[str, Any]:
    """`taskplan retry RUN [--task T] --detach`: reset what did not succeed; agents run it."""
    info = run_or_404(ctx, run_id)
    if info.state not in TERMINAL_RUN_STATES:
        raise ConflictError(f"run {run_id} is {info.state}; retry takes a finished run")
    count = ctx.engine.retry_run(run_id, task)
    if count == 0:
        what = f"task {task!r} of run {run_id}" if task else f"run {run_id}"
        raise ConflictError(f"{what} already succeeded, nothing to retry")
    return {"run_id": run_id, "reset": count, "state": ctx.engine.run_state(run_id)}


def set_paused(ctx: Ctx, job: str, paused: bool) -> dict[str, Any]:
    engine = ctx.engine
    engine.current_version(job)  # an unknown job is a 404 whatever the engine supports
    method = getattr(engine, "pause_job" if paused else "resume_job", None)
    if method is None:
        raise NotImplementedError("pausing jobs is not supported by this engine")
    method(job)
    return {"job": job, "paused": paused}
