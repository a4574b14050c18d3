"""The REST API under /api/v1: the CLI's JSON shapes, plus jobs, agents, logs and actions."""

from __future__ import annotations

import asyncio
import difflib
import json
import time
from datetime import date, datetime
from typing import Annotated, Any

import pydantic_core
from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from taskplan import shapes
from taskplan.engine.definitions import unknown_job
from taskplan.errors import StoreUnavailableError, UsageError
from taskplan.model import JobSpec, RunState, TaskRunKind
from taskplan.redact import mask_url
from taskplan.store import console, ops
from taskplan.timing import job_timezone
from taskplan.web import actions, views
from taskplan.web.live import ChangeWatcher
from taskplan.web.views import Ctx


class JSONOut(JSONResponse):
    """The API's answers: pydantic's writer (fast; NaN and infinities as null), and where it
    refuses text holding a lone surrogate (a file name os.listdir decoded from bytes that are
    not UTF-8, in a task's result, or a JSON `\\ud800` in a param: a 500 for good), `json`'s,
    which writes it as a JSON escape, as `--json` prints it."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        try:
            return pydantic_core.to_json(content, inf_nan_mode="null")
        except pydantic_core.PydanticSerializationError:
            return json.dumps(shapes.finite(content), separators=(",", ":"),
                              default=str).encode("ascii")


router = APIRouter(prefix="/api/v1", default_response_class=JSONOut)
# What the OpenAPI description says each answer is; the routes return a JSONOut, which
# FastAPI sends as it is.
OBJECT = dict[str, Any]
LIST = list[dict[str, Any]]
MAX_PAGE = 500
LOG_CHUNKS_PER_CALL = 200
# The largest whole number a store column holds (SQLite's INTEGER, PostgreSQL's bigint), as
# the CLI bounds run ids: past it SQLite's driver overflows while PostgreSQL compares, so the
# bound is checked here, one 422 on both.
INT64_MAX = 2**63 - 1
RunId = Annotated[int, PathParam(ge=1, le=INT64_MAX, description="a run id")]
# The dates `since`/`until` take: the CLI's date options' (datetime ends at years 1 and 9999;
# the margin keeps a zone's offset from crossing either end).
EARLIEST, LATEST = date(1900, 1, 1), date(9998, 12, 31)
# What a run's `trigger` is: who made it.
TRIGGERS = ("manual", "schedule", "trigger", "backfill", "job")


def ctx_of(request: Request) -> Ctx:
    ctx: Ctx = request.app.state.ctx
    return ctx


def number(default: int | None = None, *, ge: int = 1, description: str | None = None) -> Any:
    """A query parameter read by the store: an id, index or offset within int64."""
    return Query(default, ge=ge, le=INT64_MAX, description=description)


def parse_when(text: str | None, what: str) -> float | None:
    """An ISO 8601 date or instant (no offset: local time) as epoch seconds."""
    if text is None or text == "":
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{what} expects an ISO 8601 date or time such as 2026-11-20 or"
                         f" 2026-11-20T02:00, got {text!r}") from None
    if not EARLIEST <= value.date() <= LATEST:
        raise UsageError(f"{what} expects a date between {EARLIEST} and {LATEST},"
                         f" got {text!r}")
    if value.tzinfo is None:
        value = value.astimezone()
    return value.timestamp()


def parse_after(text: str, spec: JobSpec, default_tz: str) -> datetime:
    """As `taskplan next --after`: an ISO 8601 instant; without an offset a wall time in the
    job's zone."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"after expects an ISO 8601 date or time such as"
                         f" 2026-03-29T01:00+01:00, got {text!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=job_timezone(spec, default_tz))
    return value


def run_filter(job: str | None, state: str | None, trigger: str | None, since: str | None,
               until: str | None, before: int | None) -> console.RunFilter:
    if state and state not in {s.value for s in RunState}:
        raise UsageError(f"state must be one of {', '.join(s.value for s in RunState)},"
                         f" got {state!r}")
    if trigger and trigger not in TRIGGERS:
        raise UsageError(f"trigger must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
    return console.RunFilter(job or None, state or None, trigger or None,
                             parse_when(since, "since"), parse_when(until, "until"), before)


def body_keys(body: Any, takes: tuple[str, ...]) -> dict[str, Any]:
    """A POST body as an object of the keys the endpoint takes: a misspelt key (`parms`) would
    otherwise be dropped and the action done without it."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise UsageError("the body must be a JSON object such as {\"params\": {}}" if takes
                         else "this endpoint takes no body")
    unknown = [k for k in body if k not in takes]
    if unknown:
        keys = "keys" if len(unknown) > 1 else "key"
        names = ", ".join(repr(k) for k in unknown)
        guess = difflib.get_close_matches(unknown[0], takes, n=1)
        hint = f"; did you mean {guess[0]!r}?" if guess else ""
        takes_text = f"it takes: {', '.join(takes)}" if takes else "it takes none"
        raise UsageError(f"unknown {keys} {names} in the body ({takes_text}){hint}")
    return body


async def no_body(request: Request) -> None:
    """The actions without parameters refuse a body that asks for something (`{"force":
    true}`) rather than act as if it were not there; none, `{}` and `null` are fine."""
    raw = await request.body()
    if not raw.strip():
        return
    try:
        body = json.loads(raw)
    except ValueError:
        raise UsageError("this endpoint takes no body") from None
    body_keys(body, ())


NO_BODY = [Depends(no_body)]


@router.get("/jobs", response_model=LIST,
            summary="Jobs by name: version, schedules, next firing, last 20 runs")
def list_jobs(request: Request,
              q: str | None = Query(None, description="only names containing this"),
              after: str | None = Query(None, description="keyset: names after this one"),
              limit: int | None = Query(None, ge=1, le=10_000)) -> JSONOut:
    jobs = views.jobs_list(ctx_of(request), after=after, contains=q, limit=limit)
    out = JSONOut(jobs)
    if limit is not None and len(jobs) == limit:
        out.headers["X-Next-After"] = jobs[-1]["name"]
    return out


@router.get("/jobs/{job}", response_model=OBJECT,
            summary="One job, with its declared params and tasks")
def get_job(request: Request, job: str) -> JSONOut:
    return JSONOut(views.job_detail(ctx_of(request), job))


@router.get("/jobs/{job}/next", response_model=LIST,
            summary="The next firings, as `taskplan next --json`")
def job_next(request: Request, job: str, n: int = Query(10, ge=1, le=1000),
             after: str | None = Query(None, description="ISO 8601; no offset: the job's zone")
             ) -> JSONOut:
    ctx = ctx_of(request)
    spec = views.without_paused(ctx, views.job_spec(ctx, job))
    start = parse_after(after, spec, ctx.timezone) if after else None
    if views.job_paused(ctx, job):  # as `next --json`: a paused job's schedules make no runs
        return JSONOut([])
    return JSONOut(views.next_list(ctx, spec, n, start))


async def json_body(request: Request) -> Any:
    """The body read as JSON whatever its Content-Type says (`curl -d` sends a form's), None
    when empty; text that is not JSON is refused with where it stops being JSON."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw, parse_constant=_not_a_number)
    except UnicodeDecodeError:
        raise UsageError("the body is not JSON: it is not UTF-8 text") from None
    except ValueError as exc:
        raise UsageError(f"the body is not JSON: {exc}") from None


def _not_a_number(word: str) -> Any:
    """Python's reader takes NaN and Infinity, which JSON has not: such a param was stored as
    null without a word (`--param` refuses it)."""
    raise ValueError(f"{word} is not a JSON number")


RUN_BODY = {"requestBody": {"required": False, "content": {"application/json": {"schema": {
    "type": "object", "properties": {"params": {"type": "object"}},
    "additionalProperties": False}}}}}


@router.post("/jobs/{job}/runs", response_model=OBJECT, status_code=201, openapi_extra=RUN_BODY,
             summary="Run now; body {\"params\": {...}} (declared params only)")
def create_run(request: Request, job: str, body: Any = Depends(json_body)) -> JSONOut:
    return JSONOut(actions.start_run(ctx_of(request), job,
                                     body_keys(body, ("params",)).get("params")),
                   status_code=201)


@router.post("/jobs/{job}/pause", response_model=OBJECT, dependencies=NO_BODY,
             summary="Pause: schedules and triggers create no runs")
def pause_job(request: Request, job: str) -> JSONOut:
    return JSONOut(actions.set_paused(ctx_of(request), job, True))


@router.post("/jobs/{job}/resume", response_model=OBJECT, dependencies=NO_BODY,
             summary="Resume a paused job")
def resume_job(request: Request, job: str) -> JSONOut:
    return JSONOut(actions.set_paused(ctx_of(request), job, False))


@router.post("/jobs/{job}/schedules/{schedule:path}/pause", response_model=OBJECT,
             dependencies=NO_BODY,
             summary="Disable one schedule (its firings are skipped; the others fire)")
def pause_schedule(request: Request, job: str, schedule: str) -> JSONOut:
    # `:path`: a schedule's name is free text, a slash included (night/ly).
    return JSONOut(actions.set_schedule_paused(ctx_of(request), job, schedule, True))


@router.post("/jobs/{job}/schedules/{schedule:path}/resume", response_model=OBJECT,
             dependencies=NO_BODY,
             summary="Enable one paused schedule")
def resume_schedule(request: Request, job: str, schedule: str) -> JSONOut:
    return JSONOut(actions.set_schedule_paused(ctx_of(request), job, schedule, False))


@router.get("/runs", response_model=LIST,
            summary="Run history newest first, as `taskplan runs --json`")
def list_runs(request: Request, job: str | None = None,
              state: str | None = None, trigger: str | None = None,
              since: str | None = None, until: str | None = None,
              before: int | None = number(description="keyset: runs below this id"),
              limit: int = Query(20, ge=1, le=MAX_PAGE)) -> JSONOut:
    f = run_filter(job, state, trigger, since, until, before)
    with ctx_of(request).engine.store.read() as tx:
        # As `runs --job`: a deleted job still has its history; a name never applied is a typo.
        if f.job is not None and ops.job_by_name(tx, f.job) is None:
            raise unknown_job(tx, f.job)
        rows = console.runs_page(tx, f, limit)
    out = JSONOut([shapes.run_summary(r) for r in rows])
    if len(rows) == limit:
        out.headers["X-Next-Before"] = str(rows[-1].run_id)
    return out


@router.get("/runs/{run_id}", response_model=OBJECT,
            summary="One run and its task runs, as `taskplan status RUN --json`")
def get_run(request: Request, run_id: RunId,
            attempts: bool = Query(False, description="each task's attempt_list, as --attempts")
            ) -> JSONOut:
    return JSONOut(views.run_status(ctx_of(request), run_id, attempts))


@router.post("/runs/{run_id}/stop", response_model=OBJECT, dependencies=NO_BODY,
             summary="Stop: running tasks finish, nothing new starts")
def stop_run(request: Request, run_id: RunId) -> JSONOut:
    return JSONOut(actions.stop(ctx_of(request), run_id))


@router.post("/runs/{run_id}/cancel", response_model=OBJECT, dependencies=NO_BODY,
             summary="Cancel: running tasks are killed")
def cancel_run(request: Request, run_id: RunId) -> JSONOut:
    return JSONOut(actions.cancel(ctx_of(request), run_id))


# A run reruns the version it pinned: after a fix is applied, the console's "Retry on vN"
# asks for the current one, as `taskplan retry --latest` does.
RETRY_LATEST = Query(False, description="rerun on the job's current version (`retry --latest`)")


@router.post("/runs/{run_id}/retry", response_model=OBJECT, dependencies=NO_BODY,
             summary="Rerun in place what did not succeed")
def retry_run(request: Request, run_id: RunId, latest: bool = RETRY_LATEST) -> JSONOut:
    return JSONOut(actions.retry(ctx_of(request), run_id, latest=latest))


@router.post("/runs/{run_id}/tasks/{task}/retry", response_model=OBJECT, dependencies=NO_BODY,
             summary="Rerun one task and what depends on it")
def retry_task(request: Request, run_id: RunId, task: str, latest: bool = RETRY_LATEST) -> JSONOut:
    return JSONOut(actions.retry(ctx_of(request), run_id, task, latest=latest))


@router.get("/runs/{run_id}/tasks/{task}/logs", response_model=OBJECT,
            summary="Output of one attempt from a chunk offset (tail with next_offset)")
def task_logs(request: Request, run_id: RunId, task: str,
              attempt: int | None = number(), item: int | None = number(ge=0),
              offset: int = number(0, ge=0)) -> JSONOut:
    ctx = ctx_of(request)
    tr = views.task_run_of(ctx, run_id, task, item)
    if tr.kind == TaskRunKind.FOREACH:
        views.refuse_foreach(ctx, run_id, tr)
    which = views.attempt_of(task, tr, attempt)
    with ctx.engine.store.read() as tx:
        chunks = console.log_chunks(tx, tr.id, which, offset, LOG_CHUNKS_PER_CALL)
        attempts = console.attempts_of(tx, tr.id)
    this = next((a for a in attempts if a.attempt == which), None)
    running = this is not None and this.state == "running"
    more = len(chunks) == LOG_CHUNKS_PER_CALL
    return JSONOut({
        "run_id": run_id, "task": task, "item": item, "task_run_id": tr.id,
        "attempt": which, "attempts": tr.attempts,
        "state": this.state if this else tr.state,
        "offset": offset, "next_offset": chunks[-1].seq + 1 if chunks else offset,
        # Masked as the task page masks it: the page's live tail appends this text.
        "data": mask_url("".join(c.data for c in chunks)),
        "truncated": bool(this and this.truncated),
        "done": not running and not more,
    })


@router.get("/agents", response_model=LIST,
            summary="Agents (alive, draining, stopped, lost), as `agents --all --json`")
def list_agents(request: Request) -> JSONOut:
    with ctx_of(request).engine.store.read() as tx:
        found = console.agents(tx, time.time())
    return JSONOut([shapes.agent(a) for a in found])


@router.get("/stream", summary="Server-sent events: `change` when the store (or a run) moved",
            response_class=StreamingResponse)
async def stream(request: Request, run: int | None = number(),
                 since: int | None = number(ge=0)) -> StreamingResponse:
    """`since`: the newest event id the caller has seen (a live page's, from when it was
    read); a change after it is announced at once."""
    ctx = ctx_of(request)
    watcher: ChangeWatcher = request.app.state.watcher
    watcher.start()

    def run_mark() -> int:
        return views.live_mark(ctx, run)

    async def later_mark() -> int | None:
        """The mark once something moved; None while the store is away (the stream stays
        open and the watcher notices its return)."""
        if run is None:
            return watcher.latest
        try:
            return await run_in_threadpool(run_mark)
        except StoreUnavailableError:
            return None

    # Read before the answer starts: once it has, an error can no longer be its status (a
    # store that is down gives the 503 of every other endpoint, not a 200 cut short).
    seen_gen = watcher.generation
    if run is not None:  # a run that does not exist (a typo) would be silent for ever
        await run_in_threadpool(views.run_or_404, ctx, run)
    current = await run_in_threadpool(run_mark)
    server = getattr(request.app.state, "server", None)  # set when served by uvicorn

    async def still_open() -> bool:
        """The client is there and the server is not exiting (see web.server)."""
        return not (server is not None and server.should_exit) and not (
            await request.is_disconnected())

    async def events() -> Any:
        nonlocal seen_gen
        mark = current
        if since is not None and current != since:  # moved while the page was read and sent
            yield f"event: change\ndata: {json.dumps({'event_id': current})}\n\n"
        yield "retry: 2000\n\n"
        quiet = time.monotonic()
        while await still_open():
            await asyncio.sleep(0.1)
            if watcher.generation == seen_gen:
                if time.monotonic() - quiet > 15:
                    quiet = time.monotonic()
                    yield ": ping\n\n"
                continue
            seen_gen = watcher.generation
            new = await later_mark()
            if new is not None and new != mark:
                mark = new
                quiet = time.monotonic()
                yield f"event: change\ndata: {json.dumps({'event_id': new})}\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})
