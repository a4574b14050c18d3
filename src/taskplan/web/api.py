"""The REST API under /api/v1: the CLI's JSON shapes, plus jobs, agents, logs and actions."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Body, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from taskplan import shapes
from taskplan.errors import NotFoundError, UsageError
from taskplan.model import RunState, TaskRunKind
from taskplan.store import console
from taskplan.store.reports import TaskRunInfo
from taskplan.web import actions, views
from taskplan.web.live import ChangeWatcher
from taskplan.web.views import Ctx

router = APIRouter(prefix="/api/v1")
MAX_PAGE = 500
LOG_CHUNKS_PER_CALL = 200


def ctx_of(request: Request) -> Ctx:
    ctx: Ctx = request.app.state.ctx
    return ctx


def parse_when(text: str | None, what: str) -> float | None:
    """An ISO 8601 date or instant (no offset: local time) as epoch seconds."""
    if text is None or text == "":
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what} expects an ISO 8601 date or time such as 2026-11-20 or"
                         f" 2026-11-20T02:00, got {text!r}") from None
    if value.tzinfo is None:
        value = value.astimezone()
    return value.timestamp()


def run_filter(job: str | None, state: str | None, trigger: str | None, since: str | None,
               until: str | None, before: int | None) -> console.RunFilter:
    if state and state not in {s.value for s in RunState}:
        raise UsageError(f"state must be one of {', '.join(s.value for s in RunState)},"
                         f" got {state!r}")
    return console.RunFilter(job or None, state or None, trigger or None,
                             parse_when(since, "since"), parse_when(until, "until"), before)


@router.get("/jobs", summary="Jobs by name: version, schedules, next firing, last 20 runs")
def list_jobs(request: Request, response: Response,
              q: str | None = Query(None, description="only names containing this"),
              after: str | None = Query(None, description="keyset: names after this one"),
              limit: int | None = Query(None, ge=1, le=10_000)) -> list[dict[str, Any]]:
    jobs = views.jobs_list(ctx_of(request), after=after, contains=q, limit=limit)
    if limit is not None and len(jobs) == limit:
        response.headers["X-Next-After"] = jobs[-1]["name"]
    return jobs


@router.get("/jobs/{job}", summary="One job, with its declared params and tasks")
def get_job(request: Request, job: str) -> dict[str, Any]:
    return views.job_detail(ctx_of(request), job)


@router.get("/jobs/{job}/next", summary="The next firings, as `taskplan next --json`")
def job_next(request: Request, job: str, n: int = Query(10, ge=1, le=1000),
             after: str | None = None) -> list[dict[str, Any]]:
    ctx = ctx_of(request)
    spec = views.job_spec(ctx, job)
    start = None
    if after:
        at = parse_when(after, "after")
        assert at is not None
        try:
            start = datetime.fromtimestamp(at).astimezone()
        except (ValueError, OverflowError):
            raise UsageError(f"after={after!r} is outside the years datetime can hold") from None
    return views.next_list(ctx, spec, n, start)


@router.post("/jobs/{job}/runs", status_code=201,
             summary="Run now; body {\"params\": {...}} (declared params only)")
def create_run(request: Request, job: str, body: Any = Body(None)) -> dict[str, Any]:
    if body is not None and not isinstance(body, dict):
        raise UsageError("the body must be a JSON object such as {\"params\": {}}")
    return actions.start_run(ctx_of(request), job, (body or {}).get("params"))


@router.post("/jobs/{job}/pause", summary="Pause: schedules and triggers create no runs")
def pause_job(request: Request, job: str) -> dict[str, Any]:
    return actions.set_paused(ctx_of(request), job, True)


@router.post("/jobs/{job}/resume", summary="Resume a paused job")
def resume_job(request: Request, job: str) -> dict[str, Any]:
    return actions.set_paused(ctx_of(request), job, False)


@router.post("/jobs/{job}/schedules/{schedule}/pause",
             summary="Disable one schedule (its firings are skipped; the others fire)")
def pause_schedule(request: Request, job: str, schedule: str) -> dict[str, Any]:
    return actions.set_schedule_paused(ctx_of(request), job, schedule, True)


@router.post("/jobs/{job}/schedules/{schedule}/resume", summary="Enable one paused schedule")
def resume_schedule(request: Request, job: str, schedule: str) -> dict[str, Any]:
    return actions.set_schedule_paused(ctx_of(request), job, schedule, False)


@router.get("/runs", summary="Run history newest first, as `taskplan runs --json`")
def list_runs(request: Request, response: Response, job: str | None = None,
              state: str | None = None, trigger: str | None = None,
              since: str | None = None, until: str | None = None,
              before: int | None = Query(None, ge=1, description="keyset: runs below this id"),
              limit: int = Query(20, ge=1, le=MAX_PAGE)) -> list[dict[str, Any]]:
    f = run_filter(job, state, trigger, since, until, before)
    with ctx_of(request).engine.store.read() as tx:
        rows = console.runs_page(tx, f, limit)
    if len(rows) == limit:
        response.headers["X-Next-Before"] = str(rows[-1].run_id)
    return [shapes.run_summary(r) for r in rows]


@router.get("/runs/{run_id}", summary="One run and its task runs, as `taskplan status RUN --json`")
def get_run(request: Request, run_id: int,
            attempts: bool = Query(False, description="each task's attempt_list, as --attempts")
            ) -> dict[str, Any]:
    return views.run_status(ctx_of(request), run_id, attempts)


@router.post("/runs/{run_id}/stop", summary="Stop: running tasks finish, nothing new starts")
def stop_run(request: Request, run_id: int) -> dict[str, Any]:
    return actions.stop(ctx_of(request), run_id)


@router.post("/runs/{run_id}/cancel", summary="Cancel: running tasks are killed")
def cancel_run(request: Request, run_id: int) -> dict[str, Any]:
    return actions.cancel(ctx_of(request), run_id)


@router.post("/runs/{run_id}/retry", summary="Rerun in place what did not succeed")
def retry_run(request: Request, run_id: int) -> dict[str, Any]:
    return actions.retry(ctx_of(request), run_id)


@router.post("/runs/{run_id}/tasks/{task}/retry",
             summary="Rerun one task and what depends on it")
def retry_task(request: Request, run_id: int, task: str) -> dict[str, Any]:
    return actions.retry(ctx_of(request), run_id, task)


def resolve_task_run(ctx: Ctx, run_id: int, task: str, item: int | None
                     ) -> TaskRunInfo:
    store = ctx.engine.store
    with store.read() as tx:
        tr = console.task_run_by_name(tx, run_id, task, item)
    if tr is None:
        views.run_or_404(ctx, run_id)
        if item is not None:
            raise NotFoundError(f"run {run_id} has no item {item} of task {task!r}")
        raise NotFoundError(f"run {run_id} has no task {task!r}")
    return tr


@router.get("/runs/{run_id}/tasks/{task}/logs",
            summary="Output of one attempt from a chunk offset (tail with next_offset)")
def task_logs(request: Request, run_id: int, task: str,
              attempt: int | None = Query(None, ge=1), item: int | None = Query(None, ge=0),
              offset: int = Query(0, ge=0)) -> dict[str, Any]:
    ctx = ctx_of(request)
    tr = resolve_task_run(ctx, run_id, task, item)
    if tr.kind == TaskRunKind.FOREACH:
        raise UsageError(f"{task} is a foreach task: pick one of its items with item=N")
    number = attempt or tr.attempts
    if number < 1 or number > tr.attempts:
        raise NotFoundError(f"{task} has no attempt {attempt or 1} yet")
    with ctx.engine.store.read() as tx:
        chunks = console.log_chunks(tx, tr.id, number, offset, LOG_CHUNKS_PER_CALL)
        attempts = console.attempts_of(tx, tr.id)
    this = next((a for a in attempts if a.attempt == number), None)
    running = this is not None and this.state == "running"
    more = len(chunks) == LOG_CHUNKS_PER_CALL
    return {
        "run_id": run_id, "task": task, "item": item, "task_run_id": tr.id,
        "attempt": number, "attempts": tr.attempts,
        "state": this.state if this else tr.state,
        "offset": offset, "next_offset": chunks[-1].seq + 1 if chunks else offset,
        "data": "".join(c.data for c in chunks),
        "truncated": bool(this and this.truncated),
        "done": not running and not more,
    }


@router.get("/agents", summary="Agents (alive, draining, stopped, lost), as `agents --all --json`")
def list_agents(request: Request) -> list[dict[str, Any]]:
    with ctx_of(request).engine.store.read() as tx:
        found = console.agents(tx, time.time())
    return [shapes.agent(a) for a in found]


@router.get("/stream", summary="Server-sent events: `change` when the store (or a run) moved",
            response_class=StreamingResponse)
async def stream(request: Request, run: int | None = Query(None, ge=1),
                 since: int | None = Query(None, ge=0)) -> StreamingResponse:
    """`since`: the newest event id the caller has seen (a live page's, from when it was
    read); a change after it is announced at once."""
    ctx = ctx_of(request)
    watcher: ChangeWatcher = request.app.state.watcher
    watcher.start()

    def run_mark() -> int:
        return views.live_mark(ctx, run)

    async def events() -> Any:
        seen_gen = watcher.generation
        if since is None:
            mark = await run_in_threadpool(run_mark) if run is not None else watcher.latest
        else:
            mark = since
            current = await run_in_threadpool(run_mark)
            if current != mark:  # moved while the page was being read and sent
                mark = current
                yield f"event: change\ndata: {json.dumps({'event_id': current})}\n\n"
        yield "retry: 2000\n\n"
        quiet = time.monotonic()
        while not await request.is_disconnected():
            await asyncio.sleep(0.1)
            if watcher.generation == seen_gen:
                if time.monotonic() - quiet > 15:
                    quiet = time.monotonic()
                    yield ": ping\n\n"
                continue
            seen_gen = watcher.generation
            new = await run_in_threadpool(run_mark) if run is not None else watcher.latest
            if new != mark:
                mark = new
                quiet = time.monotonic()
                yield f"event: change\ndata: {json.dumps({'event_id': new})}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
